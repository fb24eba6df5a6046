"""Model families: what a run trains, behind one interface (`base.ModelFamily`: labels, model, objective,
encoding and decoding), so the trainer, evaluate, predict and convert ask the family instead of testing
kinds. Families register themselves (`base.register_family`); `base.family_for(kind)` finds one.

  tagger/        the Wojood token taggers: nested (a head per type), flat, MTN; their losses; the UM6P recipe
  span_marker/   SpanMarker: spans marked in the encoder's input, classified from the marker states
  parallel.py    the train and eval steps over all devices (pmap, or jit of shard_map)
  inference.py   the one inference driver: a family's eval step over encoded sentences
"""
