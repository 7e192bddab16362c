"""Pure parts of the replay package: windows, selection, dry-run fold, verdicts, output."""
