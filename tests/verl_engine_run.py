"""One mini-batch through verl 0.9.1's own FSDP engine loop, on data-parallel ranks over gloo.

``FSDPEngine.forward_backward_batch`` (``verl/workers/engine/fsdp/transformer_impl.py``) is verl's
mini-batch step: it counts the mini-batch's valid tokens over every rank (``batch_num_tokens``, an
all-reduce), splits the rank's share into micro-batches (``prepare_micro_batches``, dynamic batch size,
the same count on every rank), and runs forward, verl's ``ppo_loss`` (which fills the policy loss's
``global_batch_info``) and backward for each micro-batch, accumulating the gradient. All of it runs
here as verl wrote it; only the model is a stand-in: the log-probability of response token t is
``old_log_prob[t] + shift[t] + features[t] · θ``, with θ = 0, so the loss sees chosen ratios and its
gradient with respect to θ is that of the log-probabilities, projected on the features.

Run as a script (``python verl_engine_run.py INPUTS OUTPUT``, with ``VERL_PLATFORM=cpu`` so that fipo's
CPU platform is verl's device): INPUTS is a ``torch.save`` of :func:`mini_batch`'s tensors plus
``ranks``, ``max_token_len`` and ``overrides`` (verl config overrides); OUTPUT receives, per rank, the
rows of each micro-batch, the losses verl got, the ``global_batch_info`` the loss saw and θ's gradient.
"""

from __future__ import annotations

import socket
import sys
from functools import partial
from types import SimpleNamespace

import torch

ACTOR = "actor_rollout_ref.actor"


def mini_batch(rows: range, inputs: dict[str, torch.Tensor]):
    """The TensorDict verl's trainer hands one rank (left/right padded, then verl's no-padding form)."""
    from tensordict import TensorDict
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.padding import left_right_2_no_padding

    index = torch.tensor(list(rows))
    prompt_lens, response_lens = inputs["prompt_lens"][index], inputs["response_lens"][index]
    max_prompt, max_response = int(inputs["prompt_lens"].max()), inputs["old_log_probs"].shape[1]
    batch = len(index)
    positions = torch.arange(max_prompt + max_response)
    prompt_part = (positions[None, :max_prompt] >= max_prompt - prompt_lens[:, None])
    response_part = positions[None, :max_response] < response_lens[:, None]
    attention = torch.cat([prompt_part, response_part], dim=1).long()
    data = TensorDict(
        {
            "input_ids": torch.ones(batch, max_prompt + max_response, dtype=torch.long),
            "attention_mask": attention,
            "position_ids": (attention.cumsum(-1) - 1).clamp(min=0),
            "prompts": torch.ones(batch, max_prompt, dtype=torch.long),
            "responses": torch.ones(batch, max_response, dtype=torch.long),
            "response_mask": response_part.float(),
            "old_log_probs": inputs["old_log_probs"][index],
            "advantages": inputs["advantages"][index],
            "probe_row": index,
            "probe_shift": inputs["shift"][index],
            "probe_features": inputs["features"][index],
        },
        batch_size=[batch],
    )
    data = left_right_2_no_padding(data)
    tu.assign_non_tensor(data, use_dynamic_bsz=True, max_token_len_per_gpu=int(inputs["max_token_len"]),
                         use_remove_padding=True, global_batch_size=len(inputs["prompt_lens"]))
    return data


def stand_in_engine_class():
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngine

    class StandInEngine(FSDPEngine):
        """verl's FSDP engine with a linear stand-in model and no FSDP wrapping (one copy of θ per rank)."""

        def __init__(self, features: int) -> None:
            # verl's __init__ builds the FSDP model, optimizer and device mesh; the mini-batch loop reads only these.
            self.module = torch.nn.Linear(features, 1, bias=False)
            torch.nn.init.zeros_(self.module.weight)
            self.ulysses_sequence_parallel_size = 1
            self.ulysses_device_mesh = None
            self.engine_config = SimpleNamespace(use_no_sync_for_gradient_accumulation=False)
            self.seen: list[dict] = []

        def forward_step(self, micro_batch, loss_function, forward_only):
            # Response token t's log-prob sits at sequence position prompt_len + t − 1, as in verl's packed output.
            response_log_probs = (
                micro_batch["old_log_probs"] + micro_batch["probe_shift"]
                + self.module(micro_batch["probe_features"]).squeeze(-1)
            )
            attention = micro_batch["attention_mask"]
            max_prompt = micro_batch["prompts"].shape[1]
            pieces = []
            for row in range(attention.shape[0]):
                prompt_len = int(attention[row, :max_prompt].sum())
                response_len = int(attention[row, max_prompt:].sum())
                piece = torch.zeros(prompt_len + response_len)
                pieces.append(piece.index_put((torch.arange(response_len) + prompt_len - 1,),
                                              response_log_probs[row, :response_len]))
            loss, metrics = loss_function(model_output={"log_probs": torch.cat(pieces)}, data=micro_batch,
                                          dp_group=self.get_data_parallel_group())
            info = loss_function.keywords["config"].global_batch_info
            self.seen.append({"rows": micro_batch["probe_row"].tolist(), "loss": loss.item(),
                              "global_batch_info": dict(info), "metrics": {k: m.values for k, m in metrics.items()}})
            return loss, {"model_output": {}, "loss": loss.detach().item(), "metrics": metrics}

    return StandInEngine


def rank_main(rank: int, ranks: int, port: int, inputs: dict, output: str) -> None:
    import verl  # noqa: F401  (loads fipo's plugin: the future_kl loss and, with VERL_PLATFORM=cpu, the CPU platform)
    from verl.utils.config import omega_conf_to_dataclass
    from verl.workers.utils.losses import ppo_loss

    from fipo_cli.verl_adapter import compose as verl_compose

    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=ranks)
    config = omega_conf_to_dataclass(verl_compose.compose(inputs["overrides"]).actor_rollout_ref.actor)
    engine = stand_in_engine_class()(inputs["features"].shape[-1])
    share = len(inputs["prompt_lens"]) // ranks
    data = mini_batch(range(rank * share, (rank + 1) * share), inputs)
    output_of_verl = engine.forward_backward_batch(data, loss_function=partial(ppo_loss, config=config))
    result = {"micro_batches": engine.seen, "losses": output_of_verl["loss"],
              "gradient": engine.module.weight.grad.reshape(-1).clone()}
    gathered = [None] * ranks
    torch.distributed.all_gather_object(gathered, result)
    if rank == 0:
        torch.save(gathered, output)
    torch.distributed.destroy_process_group()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


if __name__ == "__main__":
    inputs_path, output_path = sys.argv[1:3]
    inputs = torch.load(inputs_path)
    torch.multiprocessing.spawn(rank_main, args=(inputs["ranks"], free_port(), inputs, output_path),
                                nprocs=inputs["ranks"], join=True)
