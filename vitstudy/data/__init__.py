"""The data layer: one module per dataset family (digits and synthetic, MNIST/Fashion-MNIST, CIFAR, image
folders and ImageNet), small datasets held on the device and augmented in batches (augment.py)."""
