"""Networks: the StyleGAN2 generator (NHWC NNX modules and their numerics) and LPIPS-VGG16."""
