"""SSL point clouds (Navaneet et al., CVPR 2020): networks, metrics and the LightningModule of the family."""
