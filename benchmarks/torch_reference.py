"""PyTorch reference of kdjax's DKD steps, for `benchmarks/compare.sh` and `benchmarks/accelerator.sh` (needs torch).

    python benchmarks/torch_reference.py --batch=64 --steps=30 [--channels_last] [--threads=N]
    python benchmarks/torch_reference.py --model=imagenet --device=cuda --amp --channels_last --batch=256

--model=cifar100 (default): the mdistiller CIFAR-100 DKD step, written out here: resnet32x4 teacher (eval mode, no
grad) and resnet8x4 student (train mode, forward + backward) exactly as mdistiller's
`mdistiller/models/cifar/resnet.py` defines them (3x3 stem, BasicBlocks, 1x1 conv + BN projection, AvgPool2d(8),
fc), loss CE + min(epoch/20, 1) · DKD (T=4, alpha=1, beta=8), SGD lr 0.05 momentum 0.9 weight decay 5e-4.
--model=imagenet: the step of `configs/dkd.py:imagenet` — PaddleClas ResNet34 teacher, ResNet18 student
(benchmarks/torch_imagenet.py), 224x224, 1000 classes, CE + DKD (T=1, alpha=1, beta=1), SGD lr 0.1 momentum 0.9
weight decay 1e-4.

Synthetic data already on the device (uint8 NHWC images normalised inside the timed step, as kdjax does).
--amp: bfloat16 autocast (kdjax's precision=bfloat16: bf16 compute, float32 parameters). On CUDA, float32 runs
allow TF32 in matmuls and convolutions (what XLA does by default) and cuDNN autotuning is on; every timed step
ends with torch.cuda.synchronize(). Prints one JSON line like `kdjax.tools.bench`: images/s (median over the
timed steps), compile seconds (first step), peak RSS (MB), device, batch, config.
"""

import argparse
import contextlib
import json
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # torch_imagenet


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        residual = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            residual = self.downsample(x)
        out = out + residual
        return F.relu(out)


class ResNet(nn.Module):
    """mdistiller's CIFAR ResNet (basicblock), returning (logits, feats) like the original."""

    def __init__(self, depth, num_filters, num_classes=100):
        super().__init__()
        n = (depth - 2) // 6
        self.inplanes = num_filters[0]
        self.conv1 = nn.Conv2d(3, num_filters[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(num_filters[0])
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(num_filters[1], n)
        self.layer2 = self._make_layer(num_filters[2], n, stride=2)
        self.layer3 = self._make_layer(num_filters[3], n, stride=2)
        self.avgpool = nn.AvgPool2d(8)
        self.fc = nn.Linear(num_filters[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        f0 = x
        f1 = self.layer1(x)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        x = self.avgpool(f3)
        avg = x.reshape(x.size(0), -1)
        return self.fc(avg), {"feats": [f0, f1, f2, f3], "pooled_feat": avg}


def resnet8x4(num_classes=100):
    return ResNet(8, [32, 64, 128, 256], num_classes)


def resnet32x4(num_classes=100):
    return ResNet(32, [32, 64, 128, 256], num_classes)


def dkd_loss(logits_student, logits_teacher, target, alpha, beta, temperature):
    """mdistiller/distillers/DKD.py, verbatim in substance."""
    gt_mask = torch.zeros_like(logits_student).scatter_(1, target.unsqueeze(1), 1).bool()
    other_mask = torch.ones_like(logits_student).scatter_(1, target.unsqueeze(1), 0).bool()
    pred_student = F.softmax(logits_student / temperature, dim=1)
    pred_teacher = F.softmax(logits_teacher / temperature, dim=1)

    def cat_mask(t):
        return torch.cat([(t * gt_mask).sum(1, keepdims=True), (t * other_mask).sum(1, keepdims=True)], dim=1)

    pred_student, pred_teacher = cat_mask(pred_student), cat_mask(pred_teacher)
    log_pred_student = torch.log(pred_student)
    tckd = F.kl_div(log_pred_student, pred_teacher, reduction="sum") * temperature ** 2 / target.shape[0]
    pred_teacher_part2 = F.softmax(logits_teacher / temperature - 1000.0 * gt_mask, dim=1)
    log_pred_student_part2 = F.log_softmax(logits_student / temperature - 1000.0 * gt_mask, dim=1)
    nckd = F.kl_div(log_pred_student_part2, pred_teacher_part2, reduction="sum") * temperature ** 2 / target.shape[0]
    return alpha * tckd + beta * nckd


MEAN = (0.5071, 0.4865, 0.4409)
STD = (0.2673, 0.2564, 0.2762)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build(args, device, fmt):
    """(teacher, student, optimizer, mean, std, image size, classes, temperature, beta, description)."""
    if args.model == "imagenet":
        from torch_imagenet import resnet18, resnet34

        teacher, student = resnet34(1000), resnet18(1000)
        size, classes, temperature, beta, lr, wd = args.image_size or 224, 1000, 1.0, 1.0, 0.1, 1e-4
        mean, std = IMAGENET_MEAN, IMAGENET_STD
        desc = f"ResNet34->ResNet18 CE+DKD(T=1,a=1,b=1) SGD(0.1,m0.9,wd1e-4) {size}x{size}"
    else:
        teacher, student = resnet32x4(), resnet8x4()
        size, classes, temperature, beta, lr, wd = 32, 100, args.temperature, args.beta, 0.05, 5e-4
        mean, std = MEAN, STD
        desc = "resnet32x4->resnet8x4 CE+DKD(T=4,a=1,b=8) SGD(0.05,m0.9,wd5e-4)"
    teacher = teacher.to(device=device, memory_format=fmt).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student = student.to(device=device, memory_format=fmt).train()
    opt = torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9, weight_decay=wd)
    mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(std, device=device).view(1, 3, 1, 1)
    return teacher, student, opt, mean, std, size, classes, temperature, beta, desc


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("cifar100", "imagenet"), default="cifar100")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu", help="auto: cuda when available")
    ap.add_argument("--amp", action="store_true", help="bfloat16 autocast (kdjax precision=bfloat16)")
    ap.add_argument("--image_size", type=int, default=0, help="--model=imagenet: image side (default 224)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps after the first")
    ap.add_argument("--channels_last", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads; 0: PyTorch's default")
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--beta", type=float, default=8.0)
    ap.add_argument("--serve", action="store_true", help="run steps on command from stdin (lockstep.py): prints "
                    "'ready', then one line 'wall_s cpu_s' per 'step' line, and the JSON line after 'done'")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    teacher, student, opt, mean, std, size, classes, temperature, beta, desc = build(args, device, fmt)
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (args.batch, size, size, 3), dtype=np.uint8)).to(device)
    labels = torch.from_numpy(rng.integers(0, classes, (args.batch,)).astype(np.int64)).to(device)
    autocast = (lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)) if args.amp else \
        contextlib.nullcontext

    def logits(out):
        return out[0] if isinstance(out, tuple) else out

    def step(epoch: int):
        x = ((images.permute(0, 3, 1, 2).float() / 255.0) - mean) / std
        x = x.contiguous(memory_format=fmt)
        with autocast():
            with torch.no_grad():
                logits_t = logits(teacher(x))
            logits_s = logits(student(x))
        logits_s, logits_t = logits_s.float(), logits_t.float()  # kdjax: losses in float32
        loss_ce = F.cross_entropy(logits_s, labels)
        warm = min(epoch / 20.0, 1.0) if args.model == "cifar100" else 1.0
        loss = loss_ce + warm * dkd_loss(logits_s, logits_t, labels, 1.0, beta, temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    def timed():
        t = time.perf_counter()
        loss = step(1)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t, loss

    compile_s, loss = timed()  # first step: oneDNN primitive creation, allocator warm-up
    for _ in range(args.warmup):
        timed()
    times = []
    if args.serve:
        print("ready", flush=True)
        for line in sys.stdin:
            if line.strip() == "done":
                break
            if line.strip() == "step":
                r0 = resource.getrusage(resource.RUSAGE_SELF)
                dt, loss = timed()
                r1 = resource.getrusage(resource.RUSAGE_SELF)
                times.append(dt)
                cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
                print(f"{dt:.6f} {cpu:.6f}", flush=True)
    else:
        for _ in range(args.steps):
            dt, loss = timed()
            times.append(dt)
    if not times:
        times.append(timed()[0])
    if not torch.isfinite(loss):
        print("non-finite loss", file=sys.stderr)
    med = statistics.median(times)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    print(json.dumps({
        "impl": "pytorch", "images_per_s": round(args.batch / med, 2), "step_ms_median": round(1000 * med, 2),
        "compile_s": round(max(compile_s - med, 0.0), 3), "peak_rss_mb": round(peak_rss_mb(), 1),
        "device": (f"cuda ({torch.cuda.get_device_name(device)})" if cuda
                   else f"cpu ({torch.get_num_threads()} threads)"), "batch": args.batch,
        "config": desc, "model": args.model, "precision": "bfloat16 (autocast)" if args.amp else "float32",
        "params": {"teacher": count(teacher), "student": count(student)},
        "peak_device_mb": round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1) if cuda else None,
        "layout": "NHWC (channels_last)" if args.channels_last else "NCHW", "steps": len(times),
        "loss": float(loss.detach()), "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
