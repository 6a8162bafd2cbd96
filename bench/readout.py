"""Cell 5 speed: map extraction, one readout epoch, and the eight-config suite, against the original's code, in one run.

    python bench/readout.py [--n 1024] [--threads 2] [--epochs 3] [--config small|freckles]
                            [--mixed-precision off|on-decoder-only|on|all] [--reference PATH] [--reference-svae PATH]

(1) images/s of `extract_conduit_maps` vs the original's per-batch loop (`geoprobe.maps.original_extract_conduit_maps`:
einsum Gram + conduit + .cpu() per batch), on the same weights and images, for each precision mode (--mixed-precision, a
name in `geoprobe.maps.PRECISION_MODES`; 'all': off, on with bf16_decoder_only, and on, the bfloat16 modes only where
`bf16_supported`), with each mode's deviation from 'off' (`map_deviations`). The original used geolip-svae's
PatchSVAE and geolip-core's FLEighConduit: pass --reference-svae (or GEOLIP_SVAE_PATH) and --reference (or
GEOLIP_CORE_PATH) to checkouts of AbstractEyes/geolip-svae and AbstractEyes/geolip-core to time the original loop with
them; without them the original loop runs on geoprobe's model and conduit, and the ratio shows the loop alone.
(2) one training epoch of the readout: the original's ConduitDataset + DataLoader(num_workers=4) loop
(`geoprobe.readout.original_train_and_eval`, one epoch, its set-up counted in) vs `train_and_eval`
(which also evaluates a validation split every epoch; its set-up and final test passes are counted in), per epoch, on
the same maps (13 channels).
(3) wall time of the whole eight-config suite (`run_readout`, one seed) at --epochs.
"""
import argparse, os, sys, time
import torch

from geoprobe.conduit import FLEighConduit
from geoprobe.data import InMemoryLoader, load_digits_images
from geoprobe.core import bf16_supported
from geoprobe.maps import PRECISION_MODES, extract_conduit_maps, map_deviations, original_extract_conduit_maps
from geoprobe.readout import original_train_and_eval, run_readout, train_and_eval
from geoprobe.svae import FRECKLES_V40_CONFIG, PatchSVAE, small_svae_config


def reference_conduit(path):
    path = path or os.environ.get('GEOLIP_CORE_PATH')
    if path: sys.path.insert(0, path)
    try:
        from geolip_core.linalg.conduit import FLEighConduit as Ref
        return Ref(), 'geolip-core reference conduit'
    except ImportError:
        return FLEighConduit(), "geoprobe's conduit (reference not importable)"


def reference_svae(model, path):
    path = path or os.environ.get('GEOLIP_SVAE_PATH')
    if path: sys.path.insert(0, path)
    try: from geolip_svae.model import PatchSVAE as Original
    except ImportError: return model, "geoprobe's PatchSVAE (geolip-svae not importable)"
    a = model.config
    ref = Original(V=a['V'], D=a['D'], ps=a['patch_size'], hidden=a['hidden'], depth=a['depth'], n_cross=a['n_cross_layers']).eval()
    ref.load_state_dict(model.state_dict())
    return ref, 'geolip-svae PatchSVAE'


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--n', type=int, default=1024, help='images for the extraction benchmark')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--epochs', type=int, default=3, help='epochs per config in the suite timing')
    ap.add_argument('--reference', default=None, help='path of a geolip-core checkout')
    ap.add_argument('--reference-svae', default=None, help='path of a geolip-svae checkout')
    ap.add_argument('--config', default='small', choices=['small', 'freckles'], help="autoencoder size: geoprobe's small one or Freckles v40 [small]")
    ap.add_argument('--mixed-precision', default='all', choices=[*PRECISION_MODES, 'all'],
                    help="extract_conduit_maps' precision mode(s) to time (geoprobe.maps.PRECISION_MODES); 'all': each one the CPU supports [all]")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = PatchSVAE(small_svae_config() if a.config == 'small' else FRECKLES_V40_CONFIG).eval()
    x, y = load_digits_images(64, 'all')
    reps = -(-a.n // len(x))
    x, y = x.repeat(reps, 1, 1, 1)[:a.n], y.repeat(reps)[:a.n]
    ref, ref_name = reference_conduit(a.reference)
    ref_model, ref_model_name = reference_svae(model, a.reference_svae)

    loader = InMemoryLoader(x, y, batch_size=128)
    original_extract_conduit_maps(ref_model, InMemoryLoader(x[:256], y[:256], batch_size=128), ref)
    t = time.perf_counter(); original_maps = original_extract_conduit_maps(ref_model, loader, ref); t_original = time.perf_counter() - t
    modes = list(PRECISION_MODES) if a.mixed_precision == 'all' else [a.mixed_precision]
    skipped = [m for m in modes if m != 'off' and a.mixed_precision == 'all' and not bf16_supported('cpu')]
    print(f'(1) extraction, {a.n} images of 64x64, {a.config} PatchSVAE, {a.threads} threads; original loop uses {ref_model_name} and {ref_name}')
    print(f'    original loop:{"":21s} {a.n / t_original:8.0f} images/s')
    by_mode = {}
    for mode in (m for m in modes if m not in skipped):
        extract_conduit_maps(model, InMemoryLoader(x[:128], y[:128], batch_size=128), progress=False, **PRECISION_MODES[mode])
        t = time.perf_counter(); by_mode[mode] = extract_conduit_maps(model, loader, progress=False, **PRECISION_MODES[mode])
        t_ours = time.perf_counter() - t
        if mode == 'off': assert torch.allclose(by_mode[mode]['S'].float(), original_maps['S'].float(), atol=1e-4), 'S maps differ'
        line = f"    geoprobe, precision {mode + ':':17s} {a.n / t_ours:8.0f} images/s   ratio {t_original / t_ours:.2f}x"
        if 'off' in by_mode and mode != 'off':
            dev = map_deviations(by_mode['off'], by_mode[mode])
            line += (f"   vs off: S median rel. err {dev['S: median relative error']:.1e}, log10 friction corr "
                     f"{dev['log10 friction: correlation']:.3f}, settle equal {dev['settle: fraction equal']:.1%}, "
                     f"error corr {dev['error: correlation']:.6f}")
        print(line)
    for mode in skipped: print(f'    precision {mode}: skipped, this CPU has no bfloat16 instructions')
    maps = by_mode.get('off', next(iter(by_mode.values())))

    big = {k: v.repeat(*([max(1, 10_000 // len(v))] + [1] * (v.dim() - 1))) for k, v in maps.items()}
    n_maps = len(big['labels'])
    def original_epoch():
        t = time.perf_counter(); original_train_and_eval(big, big, 'SFET', epochs=1); return time.perf_counter() - t
    t_original_ep = min(original_epoch() for _ in range(2))
    t_ours_ep = min(train_and_eval(big, big, 'SFET', epochs=2, seed=0)['time_s'] / 2 for _ in range(2))
    print(f'(2) readout epoch on {n_maps} maps x 13 channels (train + eval pass)')
    print(f'    original Dataset+DataLoader(num_workers=4): {t_original_ep:.2f} s   geoprobe train_and_eval (incl. validation): {t_ours_ep:.2f} s   ratio {t_original_ep / t_ours_ep:.2f}x')

    t = time.perf_counter(); run_readout(maps, maps, seeds=(0,), epochs=a.epochs, verbose=False); t_suite = time.perf_counter() - t
    print(f'(3) eight-config suite, one seed, {a.epochs} epochs, {len(maps["labels"])} maps: {t_suite:.1f} s')


if __name__ == '__main__': main()
