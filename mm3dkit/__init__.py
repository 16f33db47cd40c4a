"""mm3dkit: self-supervised pre-training of 3D point-cloud networks with image data.

Stage 1 trains a 2D ResUNet with a pixel-level contrastive loss; Stage 2 distils its frozen
per-pixel features into a 3D sparse U-Net from single RGB-D scans. See README.md.
"""

__version__ = "0.1.0"
