"""What each job asks of the cluster: GPUs, memory, runtime."""
