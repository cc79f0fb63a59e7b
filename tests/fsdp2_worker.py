"""Run by tests/test_m2_scaling.py under `torchrun --nproc_per_node 2`: shard a tiny M² block by block with torch's
FSDP2 `fully_shard` on CPU (gloo), train two steps, and save the gathered full state dict and the sharded model's
output on a fixed input."""

import sys

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from hf_mmdl import M2Config, M2ForConditionalGeneration


def tiny_model() -> M2ForConditionalGeneration:
    torch.manual_seed(0)
    config = M2Config(vocab_size=40, d_model=32, num_attention_heads=4, d_ff=64, memory_slots=4, region_feature_dim=16,
                      max_regions=10, max_position_embeddings=20, dropout=0.0)
    return M2ForConditionalGeneration(config)


def fixed_batch():
    generator = torch.Generator().manual_seed(1)
    return {
        "region_features": torch.randn(4, 10, 16, generator=generator),
        "labels": torch.randint(4, 40, (4, 6), generator=generator),
    }


def main(output_dir: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cpu", (world,))
    model = tiny_model()
    for layer in [*model.model.encoder.layers, *model.model.decoder.layers]:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    assert type(model.model.encoder.layers[0].self_attn.memory_keys).__name__ == "DTensor"

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batch = fixed_batch()
    shard = {k: v[rank::world] for k, v in batch.items()}
    for _ in range(2):
        model(**shard).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    with torch.no_grad():
        logits = model(region_features=batch["region_features"], decoder_input_ids=batch["labels"], use_cache=False).logits
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:
        torch.save({"state_dict": full, "logits": logits}, f"{output_dir}/fsdp2.pt")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
