"""Task pipelines: each wires chunk -> encode -> aggregate for one job and owns nothing else."""
