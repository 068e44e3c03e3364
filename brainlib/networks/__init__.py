"""The networks: shared layers (layers), StyleGAN v1 on progressive growing (stylegan1),
StyleGAN2 (stylegan2), the generator and critic a config names (build), the adversarial losses
(losses) and differentiable augmentation (augment). A further model family goes beside them."""
