"""The test suite: unit/ (pure, no loop, no broker), integration/ (real broker), e2e/."""
