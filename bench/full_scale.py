"""One prepared check of the full-scale GPU path, on synthetic data of the real shapes (no downloads).

    python bench/full_scale.py --device cuda             # the full check on one GPU (a few minutes), writes full_scale.json
    python bench/full_scale.py --quick                    # the same code at toy sizes on the CPU (CI runs this, so it never rots)

What it runs, each on random data of the shapes the experiments use (CIFAR-sized uint8 images, a randomly initialised
Freckles-v40-sized PatchSVAE, 16x16 maps of 13 channels):

0. every `gpu`-flagged notebook test (`nbdev_test --flags gpu` on the notebooks that have one; not in --quick);
1. conduit: `FLEighConduit` vs `torch.linalg.eigh` on B = 32,768 and 1,048,576 Cell-5-like 4x4 Gram matrices, eager and
   fused (`FLEighConduit(fused=True)`, torch.compile; on CUDA only, or with --fused), with the fused path's agreement
   with the eager one (share of rows with identical settle and friction, largest eigenvalue difference);
2. one ResNet-18 W1 epoch at batch 256 on 50,000 images, four ways: the original W1 cell's two-forward step fed by a
   torchvision-transform DataLoader; geoprobe's step in fp32 with device-resident data; the same with bfloat16
   autocast and channels-last; and plain SGD as the floor;
3. one readout epoch (`train_and_eval`, full conduit set) on 45,000 maps;
4. map extraction (`extract_conduit_maps`) of 10,000 64x64 images through the Freckles-v40-sized autoencoder, with the
   eager and (where the conduit is timed fused) the fused conduit.

It prints one table and writes one JSON (`--out`), and projects from the measured rates the wall time of the whole W1
(3 + 3 preparations of 50/100 epochs, six sweeps of 11 λ x 3 epochs) and of the whole Cell 5 (maps of 60,000 images,
8 configs x 3 seeds x 30 epochs of readout) on the device it ran on. Times are medians of `--repeats` runs after a
warm-up. It checks on the way that the two conduits agree and that every loss stays finite.
"""
import argparse, copy, json, platform, statistics, sys, time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dualgrad import original_step, plain_step  # the original W1 step, transcribed, shared with bench/dualgrad.py

from geoprobe.conduit import FLEighConduit, gram_batch  # the Cell-5-like Gram matrices bench/conduit.py times
from geoprobe.core import bf16_supported
from geoprobe.data import CIFAR10_MEAN, CIFAR10_STD, InMemoryLoader, IndexedDataset
from geoprobe.dualgrad import dual_gradient_step, resnet18_cifar, small_cnn
from geoprobe.maps import extract_conduit_maps
from geoprobe.readout import train_and_eval
from geoprobe.svae import FRECKLES_V40_CONFIG, PatchSVAE, small_svae_config

FULL = dict(conduit_batches=(32_768, 1_048_576), w1_images=50_000, w1_batch=256, model='resnet18', readout_maps=45_000,
            map_images=10_000, map_batch=256, svae=FRECKLES_V40_CONFIG)
QUICK = dict(conduit_batches=(4_096,), w1_images=512, w1_batch=64, model='small_cnn', readout_maps=512, map_images=64,
             map_batch=32, svae=small_svae_config())


def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize(device)


def timed(fn, device, repeats):
    "Median wall time of `fn()` over `repeats` runs after one warm-up run."
    fn(); sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); sync(device); times.append(time.perf_counter() - t0)
    return statistics.median(times)


def fused_agreement(eager, fused):
    "How closely the fused path reproduces the eager one: identical settle/friction rows, largest eigenvalue difference."
    ok = ~(eager.repaired | fused.repaired)
    same = lambda f: (getattr(eager, f)[ok] == getattr(fused, f)[ok]).all(-1).float().mean().item()
    return {'settle_rows_identical': same('settle'), 'friction_rows_identical': same('friction'),
            'max_eigenvalue_diff': (eager.eigenvalues - fused.eigenvalues).abs().max().item()}


def bench_conduit(cfg, device, repeats, fused):
    rows, solver, fast = [], FLEighConduit().to(device), FLEighConduit(fused=True).to(device)
    for b in cfg['conduit_batches']:
        G = gram_batch(b, 4, device=device)
        packet = solver(G)
        ref = torch.linalg.eigvalsh(G.double())
        err = (packet.eigenvalues.double().sort(-1).values - ref).abs().max().item()
        assert err < 1e-3 * ref.abs().max().item(), f'conduit eigenvalues off by {err}'
        t_c, t_e = timed(lambda: solver(G), device, repeats), timed(lambda: torch.linalg.eigh(G), device, repeats)
        row = {'what': f'conduit B={b:,}', 'geoprobe_s': t_c, 'eigh_s': t_e, 'ratio_vs_eigh': t_e / t_c}
        if fused:
            t0 = time.perf_counter(); fast(G); sync(device); row['fused_first_call_s'] = time.perf_counter() - t0
            row['fused_s'] = timed(lambda: fast(G), device, repeats)
            row['fused_ratio_vs_eigh'] = t_e / row['fused_s']
            row.update(fused_agreement(packet, fast(G)))
        rows.append(row)
    return rows


def gpu_tests():
    "Run every library notebook that holds a `gpu`-flagged test, with that flag on, in one parallel nbdev_test call."
    import re, subprocess
    root = Path(__file__).resolve().parents[1]
    names = sorted(p.name for p in (root/'nbs').glob('*.ipynb') if '#| gpu' in p.read_text())
    t0 = time.perf_counter()
    exe = Path(sys.executable).with_name('nbdev_test')                      # the one installed beside this Python
    cmd = [str(exe) if exe.exists() else 'nbdev_test', '--flags', 'gpu', '--path', 'nbs', '--n_workers', str(len(names)),
           '--skip_folder_re', '.', '--file_re', '^(' + '|'.join(map(re.escape, names)) + ')$']
    r = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if r.returncode: print(r.stdout[-3000:], r.stderr[-3000:])
    return [{'what': f'gpu-flagged tests in {", ".join(names)}', 'seconds': time.perf_counter() - t0, 'passed': float(r.returncode == 0)}]


class _RandomUint8(torch.utils.data.Dataset):
    "CIFAR-sized uint8 images behind the original's torchvision transform (random crop, flip, ToTensor, Normalize)."
    def __init__(self, x, y):
        import torchvision.transforms as T
        self.x, self.y = x.permute(0, 2, 3, 1).numpy(), y
        self.tf = T.Compose([T.ToPILImage(), T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                             T.Normalize(CIFAR10_MEAN, CIFAR10_STD)])
    def __len__(self): return len(self.y)
    def __getitem__(self, i): return self.tf(self.x[i]), self.y[i]


def w1_epoch(model_name, loader, device, step, channels_last=False):
    "Time one epoch of `step` over `loader` (noisy labels = clean labels shifted; only the cost matters)."
    torch.manual_seed(0)
    model = (resnet18_cifar() if model_name == 'resnet18' else small_cnn()).to(device)
    if channels_last: model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    state = {'step': 0, 'gv': None, 'logs': []}
    def run():
        for batch in loader:
            x, y = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
            if channels_last: x = x.contiguous(memory_format=torch.channels_last)
            step(model, opt, x, (y + 1) % 10, y, state)
    return run, state


def bench_w1(cfg, device, repeats):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (cfg['w1_images'], 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (cfg['w1_images'],), generator=g)
    bs = cfg['w1_batch']
    dataloader = torch.utils.data.DataLoader(_RandomUint8(x, y), bs, shuffle=True, num_workers=2,
                                             pin_memory=device.type == 'cuda', persistent_workers=True)
    resident = InMemoryLoader(x, y, batch_size=bs, shuffle=True, flip=True, crop_padding=4, device=device,
                              normalize=(CIFAR10_MEAN, CIFAR10_STD))
    amp = torch.bfloat16 if device.type == 'cpu' or bf16_supported(device) else None   # the CPU case exercises the code path (--quick)
    def geoprobe(dtype):
        def step(model, opt, x, noisy_y, clean_y, state):
            entry = dual_gradient_step(model, opt, x, noisy_y, clean_y, 0.5, state, k=16, log_freq=50, autocast_dtype=dtype)
            if entry is not None: state['logs'].append(entry)
        return step
    variants = {'original step, DataLoader (torchvision transforms)': (dataloader, original_step, False),
                'plain SGD, device-resident data': (resident, plain_step, False),
                'geoprobe step fp32, device-resident data': (resident, geoprobe(None), False),
                'geoprobe step bf16 + channels-last, device-resident data': (resident, geoprobe(amp), True)}
    rows = []
    for name, (loader, step, cl) in variants.items():
        run, state = w1_epoch(cfg['model'], loader, device, step, cl)
        t = timed(run, device, repeats)
        logs = [l for l in state['logs'] if 'loss_s' in l]
        assert all(torch.isfinite(torch.tensor(l['loss_s'])) for l in logs), f'{name}: non-finite loss'
        rows.append({'what': f'W1 epoch ({cfg["model"]}, {cfg["w1_images"]:,} images, batch {bs}): {name}', 'seconds': t,
                     'images_per_s': cfg['w1_images'] / t})
    base = rows[0]['seconds']
    for r in rows: r['speedup_vs_original'] = base / r['seconds']
    return rows


def bench_readout(cfg, device, repeats):
    n, g = cfg['readout_maps'], torch.Generator().manual_seed(0)
    maps = lambda m: {'S': torch.rand(m, 16, 16, 4, generator=g) + 0.1, 'friction': 10 ** (4 * torch.rand(m, 16, 16, 4, generator=g)),
                      'settle': torch.randint(0, 6, (m, 16, 16, 4), generator=g).float(),
                      'error': torch.rand(m, 16, 16, 1, generator=g) * 1e-3, 'labels': torch.arange(m) % 10}
    train, test = maps(n), maps(max(n // 4, 20))
    t = timed(lambda: train_and_eval(train, test, 'SFET', epochs=1, device=device), device, repeats)
    return [{'what': f'readout epoch (SFET, {n:,} maps, validation and test included)', 'seconds': t}]


def bench_maps(cfg, device, repeats, fused):
    n, g = cfg['map_images'], torch.Generator().manual_seed(0)
    model = PatchSVAE(cfg['svae']).to(device).eval()
    loader = InMemoryLoader(torch.rand(n, 3, 64, 64, generator=g), torch.arange(n) % 10, batch_size=cfg['map_batch'], device=device)
    with torch.no_grad(): forward = timed(lambda: [model(x) for x, _ in loader], device, repeats)
    name = f'map extraction ({n:,} images, {"Freckles-v40" if cfg["svae"] is FRECKLES_V40_CONFIG else "small"} PatchSVAE'
    rows = []
    for label, conduit in [('', None)] + ([(', fused conduit', FLEighConduit(fused=True))] if fused else []):
        t = timed(lambda: extract_conduit_maps(model, loader, conduit, progress=False), device, repeats)
        rows.append({'what': name + label + ')', 'seconds': t, 'images_per_s': n / t, 'autoencoder_forward_s': forward,
                     'share_of_forward_bound': forward / t})
    return rows


def projection(results, cfg):
    "Wall time of the whole experiments at full scale, from the measured per-unit rates (hours)."
    w1 = {r['what'].split(': ', 1)[1]: r['seconds'] * 50_000 / cfg['w1_images'] for r in results['w1']}
    prep_epochs, sweep_epochs = 3 * 50 + 3 * 100, 6 * 11 * 3
    readout_epoch = results['readout'][0]['seconds'] * 45_000 / cfg['readout_maps']
    maps_s = min(r['seconds'] for r in results['maps']) * 60_000 / cfg['map_images']   # the faster conduit
    return {'W1 (original step, DataLoader), h': w1['original step, DataLoader (torchvision transforms)'] * (prep_epochs + sweep_epochs) / 3600,
            'W1 (geoprobe defaults: fp32, device-resident), h': w1['geoprobe step fp32, device-resident data'] * (prep_epochs + sweep_epochs) / 3600,
            'W1 (geoprobe, opt-in bf16 + channels-last preparation, fp32 sweeps), h':
                (w1['geoprobe step bf16 + channels-last, device-resident data'] * prep_epochs
                 + w1['geoprobe step fp32, device-resident data'] * sweep_epochs) / 3600,
            'Cell 5 (maps of 60,000 images + 8 x 3 x 30 readout epochs), h': (maps_s + readout_epoch * 8 * 3 * 30) / 3600}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--device', default=None, help="'cuda', 'cpu', ... [cuda if available]")
    ap.add_argument('--quick', action='store_true', help='toy sizes on the CPU (what CI runs)')
    ap.add_argument('--repeats', type=int, default=None, help='timed runs per measurement [3, quick: 1]')
    ap.add_argument('--out', default='full_scale.json', help='JSON file for the results [%(default)s]')
    ap.add_argument('--fused', action='store_true', help='also time the fused conduit off CUDA (compiles for minutes on a CPU)')
    a = ap.parse_args()
    device = torch.device(a.device or ('cuda' if torch.cuda.is_available() and not a.quick else 'cpu'))
    cfg, repeats = (QUICK if a.quick else FULL), a.repeats or (1 if a.quick else 3)
    t0, fused = time.time(), a.fused or device.type == 'cuda'
    results = {'gpu_tests': gpu_tests() if device.type == 'cuda' and not a.quick else [],
               'conduit': bench_conduit(cfg, device, repeats, fused), 'w1': bench_w1(cfg, device, repeats),
               'readout': bench_readout(cfg, device, repeats), 'maps': bench_maps(cfg, device, repeats, fused)}
    info = {'device': torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or 'cpu',
            'torch': torch.__version__, 'quick': a.quick, 'repeats': repeats, 'threads': torch.get_num_threads(),
            'projection': projection(results, cfg), 'seconds': round(time.time() - t0, 1)}
    print(f"full-scale check on {info['device']} (torch {info['torch']}{', quick sizes' if a.quick else ''}), "
          f"median of {repeats} run(s)")
    for rows in results.values():
        for r in rows:
            print(f"  {r['what']:<95s} " + '  '.join(f'{k}={v:.4g}' for k, v in r.items() if k != 'what'))
    print('projected wall time of the whole experiments on this device:')
    for k, v in info['projection'].items(): print(f'  {k:<70s} {v:8.2f}')
    print(f"total {info['seconds']} s")
    Path(a.out).write_text(json.dumps({'info': info, **results}, indent=2))


if __name__ == '__main__': main()
