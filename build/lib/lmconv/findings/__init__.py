"""What the book concludes: the papers' stated numbers, their claims as data, and the scorecard that judges each claim
on a suite."""
