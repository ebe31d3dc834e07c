"""ScarNet networks: the hybrid, its blocks, encoders and the registry that builds and loads them."""
