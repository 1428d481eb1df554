"""mnist: the 60,000 MNIST training digits, downloaded by torchvision (official md5s checked)."""

from ganops.data.sources.registry import DataSource
from ganops.data.sources.torchvision_sets import mnist_format

MNIST = mnist_format("MNIST")

SOURCE = DataSource("mnist", channels=1, image_size=32, fetch=MNIST.fetch, read=MNIST.read)
