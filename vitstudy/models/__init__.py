"""The ViT body and its interchangeable parts. Importing this package imports no torch; import the
submodules (`vitstudy.models.vit`, `vitstudy.models.build`, ...) for the layers themselves."""
