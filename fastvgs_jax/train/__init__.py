"""Training: objectives, (later) state, phases, the step and the loop."""
