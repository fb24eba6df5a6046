"""Unit tests: no training run, no process started; seconds each."""
