"""The Wojood token taggers (`family`: nested, flat, MTN), their losses (`losses`: CE, focal, Dice, Tversky,
unified, and the variance penalty), and the UM6P & UL reference recipe (`um6p`)."""
