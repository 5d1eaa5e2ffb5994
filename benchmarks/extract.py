"""Throughput of ``mmn-extract`` (video files -> CLIP features): frames / s, and where the time goes.

    python -m benchmarks.extract [--videos 4] [--duration 30] [--size 480x360] [--rate 30] [--fps 0.5]
                                 [--device cpu|cuda] [--dtype fp32|bf16] [--batch-size 64] [--threads N]
                                 [--encoder base|tiny|DIR] [--out result.json]

The videos are generated (H.264 with libx264, moving shapes, Charades-like 480x360 at 30 fps by
default) in a temporary directory; the encoder is a randomly initialised ViT-B/32 of
openai/clip-vit-base-patch32's architecture (224 px, 512-d projection) with the CLIP image processor,
built in memory (``--encoder DIR`` loads a real one with from_pretrained). Speed does not depend on the
weights. One untimed warm-up video, then ``mmn.video.extract.extract_videos`` (the CLI's code path,
HDF5 writing included) on the timed videos. Model loading is not timed.

Reported: sampled frames (feature rows) per second of wall time, video seconds per wall second, and the
split: decode (demux + decode every frame + RGB conversion of the sampled ones), preprocess (the image
processor: resize, centre crop, normalise) and encode (the model's forward pass, waited for).
"""
import argparse
import json
import os
import platform
import shutil
import tempfile
import time


def make_videos(folder, count, duration, width, height, rate, codec):
    from mmn.video.synthetic import constant_rate_times, write_video

    paths = []
    for k in range(count + 1):  # +1: the warm-up video
        path = os.path.join(folder, f"video{k:02d}.mp4")
        write_video(path, constant_rate_times(duration if k else min(duration, 6.0), rate), width=width, height=height,
                    codec=codec, rate=rate)
        paths.append(path)
    return paths


def build_encoder(spec, device, dtype, batch_size):
    from mmn.video.encoder import ImageEncoder, load_image_encoder, resolve_encoder_device

    if spec in ("base", "tiny"):
        import torch
        from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

        from mmn.video.synthetic import BASE_B32, TINY

        dims = BASE_B32 if spec == "base" else TINY
        torch.manual_seed(0)
        model = CLIPVisionModelWithProjection(CLIPVisionConfig(**dims))
        side = dims["image_size"]
        processor = CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
        return ImageEncoder(model, processor, resolve_encoder_device(device), dtype=dtype, batch_size=batch_size,
                            name="random ViT-B/32" if spec == "base" else "random tiny CLIP")
    return load_image_encoder(spec, device, dtype, batch_size)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=4, help="timed videos")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per video")
    parser.add_argument("--size", default="480x360", help="WIDTHxHEIGHT of the generated videos")
    parser.add_argument("--rate", type=int, default=30, help="frame rate of the generated videos")
    parser.add_argument("--codec", default="libx264")
    parser.add_argument("--fps", type=float, default=0.5, help="sampling rate of the extraction")
    parser.add_argument("--encoder", default="base", help="base (random ViT-B/32), tiny, or a from_pretrained dir")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    import torch

    from mmn.video.extract import extract_videos

    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.lower().split("x"))
    tmp = tempfile.mkdtemp(prefix="mmn_bench_extract_")
    try:
        t0 = time.perf_counter()
        paths = make_videos(tmp, args.videos, args.duration, width, height, args.rate, args.codec)
        write_s = time.perf_counter() - t0
        encoder = build_encoder(args.encoder, args.device, args.dtype, args.batch_size)
        extract_videos([("warmup", paths[0])], os.path.join(tmp, "warmup.hdf5"), encoder, args.fps, progress=False)
        videos = [(os.path.splitext(os.path.basename(p))[0], p) for p in paths[1:]]
        s = extract_videos(videos, os.path.join(tmp, "feats.hdf5"), encoder, args.fps, progress=False)
        if s.failed:
            raise SystemExit(f"benchmark videos failed: {s.failed}")
        video_s = args.videos * args.duration
        other_s = s.wall_s - s.decode_s - s.preprocess_s - s.encode_s
        result = {
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "load_avg": os.getloadavg(),
            "device": str(encoder.device), "dtype": args.dtype, "threads": torch.get_num_threads(),
            "encoder": encoder.name, "batch_size": args.batch_size,
            "videos": args.videos, "video": f"{width}x{height} {args.codec} {args.rate} fps, {args.duration:g} s",
            "fps": args.fps, "rows": s.frames, "decoded_frames": s.decoded_frames,
            "wall_s": s.wall_s, "rows_per_s": s.frames / s.wall_s, "video_s_per_s": video_s / s.wall_s,
            "decode_s": s.decode_s, "decoded_frames_per_s": s.decoded_frames / s.decode_s,
            "preprocess_s": s.preprocess_s, "encode_s": s.encode_s, "other_s": other_s,
            "encode_rows_per_s": s.frames / s.encode_s, "video_write_s": write_s,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    share = {k: 100 * result[k] / result["wall_s"] for k in ("decode_s", "preprocess_s", "encode_s", "other_s")}
    print(f"mmn-extract, {result['encoder']} on {result['device']} ({result['dtype']}, {result['threads']} threads, "
          f"batch {args.batch_size}); {args.videos} videos of {result['video']}, sampled at {args.fps:g} fps; "
          f"load average {result['load_avg'][0]:.2f}")
    print(f"  {result['rows']} frames encoded in {result['wall_s']:.2f} s: {result['rows_per_s']:.1f} frames/s, "
          f"{result['video_s_per_s']:.1f} s of video per s")
    print(f"  decode     {result['decode_s']:7.2f} s ({share['decode_s']:4.1f} %)  {result['decoded_frames']} frames "
          f"decoded, {result['decoded_frames_per_s']:.0f} decoded frames/s")
    print(f"  preprocess {result['preprocess_s']:7.2f} s ({share['preprocess_s']:4.1f} %)  image processor")
    print(f"  encode     {result['encode_s']:7.2f} s ({share['encode_s']:4.1f} %)  {result['encode_rows_per_s']:.1f} frames/s "
          "through the model")
    print(f"  other      {result['other_s']:7.2f} s ({share['other_s']:4.1f} %)  HDF5 writing, bookkeeping")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
