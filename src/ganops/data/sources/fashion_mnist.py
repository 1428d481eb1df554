"""fashion-mnist: Zalando's 60,000 training images of clothes, in MNIST's format, downloaded by torchvision."""

from ganops.data.sources.registry import DataSource
from ganops.data.sources.torchvision_sets import mnist_format

FASHION_MNIST = mnist_format("FashionMNIST")

SOURCE = DataSource("fashion-mnist", channels=1, image_size=32, fetch=FASHION_MNIST.fetch, read=FASHION_MNIST.read)
