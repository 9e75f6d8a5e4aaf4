"""Per-channel statistics that weights are normalised with, in one place (as ``timm.data.constants``)."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Fashion-MNIST's 60,000 training images, pixels in [0, 1]
FMNIST_MEAN = (0.2860,)
FMNIST_STD = (0.3530,)

# The fields every torchvision ImageNet-1k weight shares, for the families' weight tables
TORCHVISION_URL = "https://download.pytorch.org/models/"
TORCHVISION_IN1K = dict(
    dataset="imagenet-1k",
    license="bsd-3-clause",
    origin="torchvision",
    num_classes=1000,
    input_size=(3, 224, 224),
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    class_names="imagenet-1k",
    resize=256,  # evaluated as torchvision's transforms: short side to 256, centre crop 224, bilinear
    interpolation="bilinear",
)
