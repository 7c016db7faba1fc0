"""Images of an item folder decoded into one ``uint8`` / float ``.npy`` memory map, for
:meth:`recstudio.data.content.ContentStore.from_image_folder` (Pillow is imported only here)."""
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, Union

import numpy as np
import torch

from recstudio.utils.errors import ConfigError, DataError


def write_image_array(folder: Union[str, Path], out: Union[str, Path], size: int = 224,
                      transform: Optional[Callable] = None, ids: Optional[Iterable[str]] = None,
                      extensions: Sequence[str] = (".jpg", ".jpeg", ".png")) -> Path:
    """Decode one image per item (file stem = original item id) into the ``.npy`` ``out`` and write its
    ``<stem>.ids.txt`` sidecar; returns ``out``. The arguments and errors are those of
    :meth:`~recstudio.data.content.ContentStore.from_image_folder`.
    """
    from recstudio.data.content import _check_dtype, _ids_sidecar
    try:
        from PIL import Image
    except ImportError:
        raise ConfigError("ContentStore.from_image_folder decodes images with Pillow, which is not "
                          "installed: pip install pillow (torchvision is optional, for transforms).") from None
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist.")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in {e.lower() for e in extensions})
    if ids is not None:
        wanted = {str(i) for i in ids}
        files = [p for p in files if p.stem in wanted]
    if not files:
        raise DataError(f"no images ({', '.join(extensions)}) in {folder}; name each image after its item id.")
    stems = [p.stem for p in files]
    if len(set(stems)) != len(stems):
        raise DataError(f"{folder} has several images for one item id (same name, other suffix).")

    def load(p: Path) -> np.ndarray:
        try:
            with Image.open(p) as img:
                img = img.convert("RGB")
                if transform is not None:
                    x = transform(img)
                    x = x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
                    return x.astype(np.float32) if x.dtype == np.float64 else x
                img = img.resize((size, size), Image.BILINEAR)
                return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read image {p}: {e}") from None

    first = load(files[0])
    _check_dtype(first.dtype)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    array = np.lib.format.open_memmap(out, mode="w+", dtype=first.dtype, shape=(len(files), *first.shape))
    array[0] = first
    for k, p in enumerate(files[1:], 1):
        x = load(p)
        if x.shape != first.shape or x.dtype != first.dtype:
            raise DataError(f"image {p} gives {x.dtype} {x.shape}, the first gave {first.dtype} {first.shape}; "
                            "resize in the transform so every image gives the same shape.")
        array[k] = x
    array.flush()
    del array
    _ids_sidecar(out).write_text("\n".join(stems) + "\n", encoding="utf-8")
    return out
