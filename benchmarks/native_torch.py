"""The ResNet-18 VAE written by hand in plain PyTorch: the native baseline.

Same layers as `keras_resvae.build_vae("resnet18", ..., stem="cifar",
upsampling="nearest")`, same parameter count (asserted by throughput.py), same
objective (sigma-VAE Gaussian likelihood + analytic KL) and the same optimizer
(Adam). It is what a PyTorch user would write, so every Keras backend is
measured against it.
"""

import math

import torch
from torch import nn
from torch.nn import functional

STAGE_FILTERS = (64, 128, 256, 512)
STAGE_STRIDES = (1, 2, 2, 2)


def _filters(count, width):
    return max(1, int(round(count * width)))


def _same_size(size, stride):
    return -(-size // stride)


class ConvNormAct(nn.Module):
    """3x3/1x1 conv with TensorFlow-style 'same' padding -> BN? -> ReLU?"""

    def __init__(self, cin, cout, kernel, stride=1, bn=True, act=True, zero=False):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=0, bias=not bn)
        nn.init.kaiming_normal_(self.conv.weight, nonlinearity="relu")
        if zero and not bn:
            nn.init.zeros_(self.conv.weight)
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1) if bn else None
        if self.bn is not None and zero:
            nn.init.zeros_(self.bn.weight)
        self.act = act

    def forward(self, x):
        # 'same' padding as Keras computes it (more on the bottom/right when odd).
        height, width = x.shape[-2:]
        pads = []
        for size in (width, height):
            out = _same_size(size, self.stride)
            total = max((out - 1) * self.stride + self.kernel - size, 0)
            pads += [total // 2, total - total // 2]
        x = self.conv(functional.pad(x, pads))
        if self.bn is not None:
            x = self.bn(x)
        return functional.relu(x) if self.act else x


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride, bn):
        super().__init__()
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = ConvNormAct(cin, cout, 1, stride, bn, act=False)
        self.conv1 = ConvNormAct(cin, cout, 3, stride, bn)
        self.conv2 = ConvNormAct(cout, cout, 3, 1, bn, act=False, zero=True)

    def forward(self, x):
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return functional.relu(shortcut + self.conv2(self.conv1(x)))


def _stage_sizes(height, width):
    sizes, size = [], (height, width)
    for stride in STAGE_STRIDES:
        size = tuple(_same_size(s, stride) for s in size)
        sizes.append(size)
    return sizes


class Encoder(nn.Module):
    def __init__(self, channels, latent_dim, width, bn):
        super().__init__()
        filters = [_filters(f, width) for f in STAGE_FILTERS]
        self.stem = ConvNormAct(channels, filters[0], 3, 1, bn)
        blocks, cin = [], filters[0]
        for cout, stride in zip(filters, STAGE_STRIDES):
            blocks += [BasicBlock(cin, cout, stride, bn), BasicBlock(cout, cout, 1, bn)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(filters[-1], 2 * latent_dim)  # Keras's Dense: Glorot uniform
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.latent_dim = latent_dim

    def forward(self, x):
        features = self.blocks(self.stem(x)).mean(dim=(2, 3))
        moments = self.head(features)
        return moments[:, : self.latent_dim], moments[:, self.latent_dim :]


class Decoder(nn.Module):
    def __init__(self, image_shape, latent_dim, width, bn):
        super().__init__()
        height, width_px, channels = image_shape
        filters = [_filters(f, width) for f in STAGE_FILTERS]
        self.sizes = [(height, width_px), *_stage_sizes(height, width_px)]
        top = self.sizes[-1]
        self.top_channels = filters[-1]
        self.dense = nn.Linear(latent_dim, math.prod(top) * filters[-1], bias=not bn)
        nn.init.kaiming_normal_(self.dense.weight, nonlinearity="relu")
        if self.dense.bias is not None:
            nn.init.zeros_(self.dense.bias)
        self.dense_bn = nn.BatchNorm2d(filters[-1], eps=1e-5, momentum=0.1) if bn else None
        self.stages = nn.ModuleList()
        self.transitions = nn.ModuleList()
        cin = filters[-1]
        for stage in reversed(range(4)):
            if stage < 3:
                self.transitions.append(ConvNormAct(cin, filters[stage], 3, 1, bn))
                cin = filters[stage]
            self.stages.append(
                nn.Sequential(
                    BasicBlock(cin, filters[stage], 1, bn),
                    BasicBlock(filters[stage], filters[stage], 1, bn),
                )
            )
        self.logits = nn.Conv2d(filters[0], channels, 3, padding=1)
        nn.init.xavier_uniform_(self.logits.weight)
        nn.init.zeros_(self.logits.bias)

    def _upsample_to(self, x, size):
        factors = tuple(_same_size(t, s) for t, s in zip(size, x.shape[-2:]))
        if factors != (1, 1):
            x = functional.interpolate(x, scale_factor=factors, mode="nearest")
        return x[..., : size[0], : size[1]]

    def forward(self, z):
        x = self.dense(z).view(-1, *self.sizes[-1], self.top_channels).permute(0, 3, 1, 2)
        if self.dense_bn is not None:
            x = self.dense_bn(x)
        x = functional.relu(x)
        transitions = iter(self.transitions)
        for index, stage in enumerate(reversed(range(4))):
            if stage < 3:
                x = next(transitions)(self._upsample_to(x, self.sizes[stage + 1]))
            x = self.stages[index](x)
        x = self._upsample_to(x, self.sizes[0])
        return self.logits(x)


class ResNet18VAE(nn.Module):
    """Encoder -> reparameterised sample -> decoder logits, on NCHW tensors."""

    def __init__(self, image_shape, latent_dim, width=1.0, use_batch_norm=False):
        super().__init__()
        self.encoder = Encoder(image_shape[-1], latent_dim, width, use_batch_norm)
        self.decoder = Decoder(image_shape, latent_dim, width, use_batch_norm)

    def forward(self, images):
        z_mean, z_log_var = self.encoder(images)
        z_log_var = z_log_var.clamp(-30.0, 20.0)
        z = z_mean + torch.exp(0.5 * z_log_var) * torch.randn_like(z_mean)
        return self.decoder(z), z_mean, z_log_var


def negative_elbo(images, logits, z_mean, z_log_var):
    """sigma-VAE Gaussian NLL (sigma = batch root MSE, floored) + KL, mean nats per image."""
    means = torch.sigmoid(logits.float())
    squared = (images - means) ** 2
    log_sigma = torch.clamp(0.5 * torch.log(squared.mean() + 1e-12), min=-6.0)
    dims = images[0].numel()
    nll = squared.flatten(1).sum(1) / (2 * torch.exp(2 * log_sigma))
    nll = nll + dims * (log_sigma + 0.5 * math.log(2 * math.pi))
    kl = 0.5 * (z_mean**2 + torch.exp(z_log_var) - 1 - z_log_var).sum(1)
    return (nll + kl).mean()


def make_train_step(model, optimizer, autocast_dtype=None, device="cpu"):
    """One optimisation step on an NCHW batch; returns the loss tensor."""

    def step(images):
        optimizer.zero_grad(set_to_none=True)
        if autocast_dtype is None:
            loss = negative_elbo(images, *model(images))
        else:
            with torch.autocast(device_type=device, dtype=autocast_dtype):
                outputs = model(images)
            loss = negative_elbo(images, *outputs)
        loss.backward()
        optimizer.step()
        return loss

    return step
