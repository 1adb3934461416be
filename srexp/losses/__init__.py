"""Losses: pixel (L1, MSE, Charbonnier), perceptual (VGG19 features) and adversarial (vanilla, LSGAN, RaGAN).

L1 and MSE are ``torch.nn.L1Loss`` / ``torch.nn.MSELoss`` named by ``_target_`` in the configs; the rest live here.
"""
