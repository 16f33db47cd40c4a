"""Networks: the 3D sparse U-Nets (Res16UNet family) and the 2D ResUNet."""
