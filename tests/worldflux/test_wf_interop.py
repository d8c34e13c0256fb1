"""`worldflux.interop`: torch <-> JAX <-> numpy conversion, shared memory where DLPack allows."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from worldflux.core import ActionPayload, State, WorldModelInput
from worldflux.interop import (
    array_kind,
    cpu_to_torch,
    infer_kind,
    is_array,
    jax_origin,
    to_jax,
    to_jit_input,
    to_kind,
    to_numpy,
    to_torch,
    torch_meta_like,
    tree_to_kind,
)


def test_to_jax_shares_memory_with_a_contiguous_cpu_tensor() -> None:
    tensor = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    array = to_jax(tensor)
    assert isinstance(array, jax.Array)
    assert array.unsafe_buffer_pointer() == tensor.data_ptr()
    tensor[1, 2] = 100.0  # a write through torch is visible through the JAX array: same memory
    assert float(array[1, 2]) == 100.0


def test_to_jax_detaches_tensors_that_require_grad_without_copying() -> None:
    tensor = torch.ones(5, requires_grad=True)
    array = to_jax(tensor)
    assert array.unsafe_buffer_pointer() == tensor.data_ptr()


def test_to_jax_copies_when_it_must_and_keeps_values() -> None:
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    transposed = base.t()  # non-contiguous: made contiguous (a copy)
    np.testing.assert_array_equal(np.asarray(to_jax(transposed)), transposed.numpy())
    doubles = torch.arange(4, dtype=torch.float64)  # float64 -> float32 (JAX runs without x64)
    assert to_jax(doubles).dtype == jnp.float32
    ints = torch.arange(4, dtype=torch.int32)
    assert to_jax(ints, dtype="float32").dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(to_jax(ints, dtype=torch.float32)), [0.0, 1.0, 2.0, 3.0])


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.int32, torch.bfloat16, torch.float16])
def test_to_jax_and_back_keeps_dtype_and_values(dtype: torch.dtype) -> None:
    tensor = (torch.arange(6) % 3).to(dtype).reshape(2, 3)
    back = to_torch(to_jax(tensor))
    assert back.dtype == dtype
    assert torch.equal(back, tensor)


def test_to_jax_accepts_numpy_scalars_lists_and_jax() -> None:
    assert to_jax(np.ones((2, 2), np.float32)).shape == (2, 2)
    assert to_jax([1.0, 2.0]).shape == (2,)
    array = jnp.zeros(3)
    assert to_jax(array) is array


def test_to_torch_shares_the_jax_buffer() -> None:
    array = jnp.arange(6.0).reshape(2, 3) * 2.0
    tensor = to_torch(array)
    assert isinstance(tensor, torch.Tensor)
    assert tensor.data_ptr() == array.unsafe_buffer_pointer()
    assert torch.equal(tensor, torch.tensor([[0.0, 2.0, 4.0], [6.0, 8.0, 10.0]]))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.int32, jnp.uint8, jnp.bool_, jnp.bfloat16])
def test_to_torch_of_cpu_arrays_shares_memory(dtype: jnp.dtype) -> None:
    for shape in [(), (3,), (2, 3)]:
        array = (jnp.arange(np.prod(shape, dtype=int)) % 2).astype(dtype).reshape(shape)
        tensor = to_torch(array)
        assert tensor.shape == shape and tensor.data_ptr() == array.unsafe_buffer_pointer()
        np.testing.assert_array_equal(tensor.float().numpy(), np.asarray(array, np.float32))


def test_to_torch_never_shows_torchs_read_only_warning() -> None:
    # Torch warns once per process about read-only numpy arrays; a fresh process sees whether the first
    # conversions let it through.
    import subprocess
    import sys

    code = (
        "import jax.numpy as jnp, numpy as np\n"
        "from worldflux.interop import to_torch\n"
        "for _ in range(3):\n"
        "    to_torch(jnp.arange(3.0)); to_torch(np.asarray(jnp.ones(2)))\n"
    )
    result = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "not writable" not in result.stderr


def test_a_tensor_from_to_torch_outlives_its_jax_array() -> None:
    import gc

    tensor = to_torch(jnp.arange(4.0) * 3.0, track_origin=False)
    gc.collect()
    jnp.ones((1024, 1024)).block_until_ready()  # reuse freed memory, if the view did not keep it alive
    assert torch.equal(tensor, torch.tensor([0.0, 3.0, 6.0, 9.0]))


def test_tensor_made_by_to_torch_converts_back_to_the_same_jax_array() -> None:
    array = jnp.ones((4, 2))
    tensor = to_torch(array)
    assert jax_origin(tensor) is array and to_jax(tensor) is array
    assert jax_origin(torch.ones(2)) is None


def test_to_torch_without_origin_tracking_still_shares_memory() -> None:
    array = jnp.arange(6.0).reshape(2, 3)
    tensor = to_torch(array, track_origin=False)
    assert jax_origin(tensor) is None
    assert tensor.data_ptr() == array.unsafe_buffer_pointer()
    assert to_kind(array, "torch", track_origin=False).data_ptr() == array.unsafe_buffer_pointer()


def test_tensors_made_by_to_torch_save_and_load_with_weights_only(tmp_path) -> None:
    path = tmp_path / "state.pt"
    torch.save({"latent": to_torch(jnp.arange(3.0))}, path)
    assert torch.equal(torch.load(path, weights_only=True)["latent"], torch.tensor([0.0, 1.0, 2.0]))


def test_the_origin_table_forgets_dead_tensors() -> None:
    import gc

    from worldflux import interop

    before = len(interop._ORIGINS)
    tensors = [to_torch(jnp.ones(2)) for _ in range(10)]
    assert len(interop._ORIGINS) == before + 10
    del tensors
    gc.collect()
    assert len(interop._ORIGINS) == before


def test_to_numpy_views_jax_memory_and_torch_memory() -> None:
    array = jnp.arange(4.0) + 1.0
    view = to_numpy(array)
    assert view.ctypes.data == array.unsafe_buffer_pointer()
    tensor = torch.zeros(3)
    assert np.shares_memory(to_numpy(tensor), tensor.numpy())


def test_to_jit_input_hands_cpu_tensors_over_as_numpy_views() -> None:
    tensor = torch.randn(8, 3)
    arg = to_jit_input(tensor)
    assert isinstance(arg, np.ndarray)
    assert arg.ctypes.data == tensor.data_ptr()
    array = jnp.ones(2)
    assert to_jit_input(to_torch(array)) is array
    assert to_jit_input(torch.arange(3), dtype=np.float32).dtype == np.float32


def test_to_jit_input_views_grad_tensors_and_copies_negated_views() -> None:
    leaf = torch.randn(4, 3, requires_grad=True)
    arg = to_jit_input(leaf)
    assert isinstance(arg, np.ndarray) and arg.ctypes.data == leaf.data_ptr()
    negated = torch.randn(4, 3)._neg_view()  # a lazily negated view: numpy cannot view it
    np.testing.assert_array_equal(np.asarray(to_jit_input(negated)), -negated._neg_view().numpy())
    sliced = to_torch(jnp.arange(6.0))[2:]  # a view of a model output, not the output itself
    np.testing.assert_array_equal(np.asarray(to_jit_input(sliced)), [2.0, 3.0, 4.0, 5.0])


def test_a_tensor_reshaped_in_place_no_longer_stands_for_its_origin() -> None:
    array = jnp.arange(9.0).reshape(3, 3)
    tensor = to_torch(array)
    assert to_jit_input(tensor) is array
    tensor.t_()  # same buffer, shape and dtype; transposed strides
    np.testing.assert_array_equal(np.asarray(to_jit_input(tensor)), np.arange(9.0).reshape(3, 3).T)
    np.testing.assert_array_equal(np.asarray(to_jax(tensor)), np.arange(9.0).reshape(3, 3).T)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.int32, jnp.bfloat16])
def test_cpu_to_torch_shares_memory_and_remembers_its_origin(dtype: jnp.dtype) -> None:
    array = jnp.arange(6, dtype=dtype).reshape(2, 3)
    tensor = cpu_to_torch(array)
    assert tensor.shape == (2, 3) and tensor.data_ptr() == array.unsafe_buffer_pointer()
    assert jax_origin(tensor) is array and to_jit_input(tensor) is array
    untracked = cpu_to_torch(array, track_origin=False)
    assert jax_origin(untracked) is None and untracked.data_ptr() == array.unsafe_buffer_pointer()
    np.testing.assert_array_equal(untracked.float().numpy(), np.arange(6.0).reshape(2, 3))


def test_array_kinds_and_inference() -> None:
    assert array_kind(torch.zeros(1)) == "torch"
    assert array_kind(np.zeros(1)) == "numpy"
    assert array_kind(jnp.zeros(1)) == "jax"
    assert array_kind([1.0]) is None and not is_array(3.0)
    assert infer_kind(State(tensors={"z": np.zeros((2, 3))})) == "numpy"
    assert infer_kind({"obs": jnp.zeros(2)}) == "jax"
    assert infer_kind(WorldModelInput(observations={"obs": np.zeros(2)})) == "numpy"
    assert infer_kind(ActionPayload(kind="continuous", tensor=jnp.zeros(2))) == "jax"
    assert infer_kind(None, [1, 2]) == "torch"  # no arrays: the default


@pytest.mark.parametrize("kind, cls", [("torch", torch.Tensor), ("numpy", np.ndarray), ("jax", jax.Array)])
def test_to_kind_and_tree_to_kind(kind: str, cls: type) -> None:
    tree = {"a": jnp.ones(2), "b": [jnp.zeros(1), None]}
    out = tree_to_kind(tree, kind)
    assert isinstance(out["a"], cls) and isinstance(out["b"][0], cls) and out["b"][1] is None
    assert isinstance(to_kind(np.ones(2, np.float32), kind), cls)


def test_to_kind_rejects_unknown_kinds() -> None:
    with pytest.raises(ValueError, match="array kind must be one of"):
        to_kind(jnp.ones(1), "tensorflow")


def test_torch_meta_like_has_shape_and_dtype_but_no_data() -> None:
    meta = torch_meta_like(np.zeros((2, 5), np.int32))
    assert meta.device.type == "meta" and meta.shape == (2, 5) and meta.dtype == torch.int32
    real = torch.zeros(3)
    assert torch_meta_like(real) is real
