"""Place stand-in "ImageNet" weights in torch's hub cache, for runs where nothing can download.

Each named model gets a randomly initialised torchvision state dict saved under the exact file
name torchvision's weights enum downloads to ($TORCH_HOME/hub/checkpoints/<name>-<hash>.pth), so
`lab3 train --init imagenet` and `lab3 run --pretrained` run offline. These are NOT ImageNet
weights: result.json records that the file's SHA-256 does not match its published name, and
the report labels such runs as using stand-ins. An existing file is never overwritten.

    .venv/bin/python benchmarks/place_imagenet_standins.py resnet18 resnet50 resnet152
    TORCH_HOME=/tmp/standin-torch .venv/bin/lab3 run --pretrained --profile tiny
"""

from __future__ import annotations

import argparse

import torch
import torchvision

from lab3.models.pretrained import hub_file, torchvision_name, weights_enum


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="resnet18, torchvision:densenet121, ...")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for model in args.models:
        path = hub_file(weights_enum(model))
        if path.is_file():
            print(f"{model}: {path} exists, left as it is")
            continue
        torch.manual_seed(args.seed)
        net = torchvision.models.get_model(torchvision_name(model) or model, weights=None)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(net.state_dict(), path)
        print(f"{model}: stand-in (random weights, not ImageNet) written to {path}")


if __name__ == "__main__":
    main()
