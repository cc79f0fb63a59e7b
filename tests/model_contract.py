"""The contract every architecture keeps, written once: what transformers' `ModelTesterMixin` is to its models.

An architecture's test file subclasses `ModelContract` with a small tester that supplies a tiny configuration, a batch
that makes the model return its training objective as `.loss`, and a few numbers measured on that model (how fast it
learns a fixed batch, how far bf16 moves its loss). Every `test_*` here then runs for it:

    class TestVAEContract(ModelContract):
        model_class = ImageVAEModel
        auto_class = AutoModelForImageToImage
        ...
        def config(self): return ImageVAEConfig(...)
        def inputs(self, batch_size=2): return {"pixel_values": ..., "generator": ...}
"""

import re

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModel

# Outputs of the same weights and inputs computed through other memory addresses or another thread split (a reloaded
# adapter, a second process) may be summed in another order. float32 rounds each step by at most eps = 1.2e-7
# relative, so a dot product of n terms moves by up to ~n·eps of its absolute sum in the worst case and ~√n·eps in
# practice; through a handful of layers of width 32-128 that is ~1e-6 on outputs of order 1. Measured on an AVX-512
# machine: the M² LoRA reload once 2.04e-6 off, the GLIDE one 2.03e-6; 1 vs 2 threads move GLIDE's prediction by
# 2.1e-6 and M²'s logits by 9.5e-7. 1e-5 relative and absolute leaves a margin of ~5 over that, and is far below what
# 5 LoRA steps change (5.8e-2 on the dVAE, the least; the test asks for 1e-3).
REORDERED_FLOAT32 = dict(rtol=1e-5, atol=1e-5)


class ModelContract:
    """Mixin of contract tests. A subclass (named `Test...` so pytest collects it) sets the class attributes and
    implements `config` and `inputs`; `output` and `prepare` have defaults."""

    model_class: type  # the task model under test, e.g. M2ForConditionalGeneration
    auto_class: type  # the task Auto class that must load it back, e.g. AutoModelForImageTextToText
    bare_model_class: type | None = None  # what AutoModel loads from the task checkpoint, when not model_class itself
    lora_target_modules: str | list[str]  # the architecture's declared `<MODEL>_LORA_TARGET_MODULES`
    # What that declaration promises to adapt, as patterns searched in module names: each must match at least one
    # module, every module it matches must get an adapter, and no other module may get one.
    lora_promised_modules: tuple[str, ...]
    # `learning_steps` AdamW steps at `learning_rate` on one fixed batch must bring the loss below `learning_ratio` ×
    # its first value, or, for a loss with no floor at 0 (a negative log-density), `learning_drop` below it.
    learning_rate: float = 1e-3
    learning_steps: int = 10
    learning_ratio: float | None = None
    learning_drop: float | None = None
    # Under bf16 autocast the loss must stay within this share of the fp32 loss (set per architecture from the
    # measured difference), and the compared output within `bf16_output_rtol` in relative norm: bf16 keeps 8 bits of
    # mantissa (eps 3.9e-3), which a few layers grow to ~1e-2 on these tiny models (measured 0.7-1.8e-2 over 10 seeds).
    bf16_loss_rtol: float
    bf16_output_rtol: float = 3e-2

    # ---- hooks ---------------------------------------------------------------------------------------------------
    def config(self):
        """A tiny configuration (seconds on 2 CPU cores for the whole contract)."""
        raise NotImplementedError

    def inputs(self, batch_size: int = 2) -> dict:
        """Fresh keyword arguments for `model(**inputs)` that return `.loss`: labels or the objective's own inputs,
        with every random draw fixed (noise, timesteps, a new seeded `torch.Generator` each call)."""
        raise NotImplementedError

    def output(self, outputs) -> torch.Tensor:
        """The output tensor compared across save/reload, LoRA on/off, and the like: by default the field after the
        loss (logits, reconstruction, prediction)."""
        return outputs.to_tuple()[1]

    def prepare(self, model) -> None:
        """Change a fresh model in place where its init would make a test vacuous (e.g. a zero output layer)."""

    # ---- helpers -------------------------------------------------------------------------------------------------
    def make_model(self):
        torch.manual_seed(0)
        model = self.model_class(self.config())
        self.prepare(model)
        return model.eval()

    def forward(self, model, **overrides):
        # Whatever a forward draws from the global generator (dequantisation noise, caption dropout) is drawn the same.
        torch.manual_seed(0)
        return model(**(self.inputs() | overrides))

    def train_steps(self, model, parameters, learning_rate: float, steps: int) -> list[float]:
        optimizer = torch.optim.AdamW(parameters, lr=learning_rate)
        model.train()
        losses = []
        for _ in range(steps):
            loss = self.forward(model).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return losses

    # ---- the contract --------------------------------------------------------------------------------------------
    def test_save_and_auto_reload_give_identical_outputs_from_safetensors(self, tmp_path):
        model = self.make_model()
        model.save_pretrained(tmp_path)
        assert (tmp_path / "model.safetensors").exists()
        assert not [p.name for p in tmp_path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl")], \
            "weights must be stored as safetensors only"

        reloaded = self.auto_class.from_pretrained(tmp_path).eval()
        assert type(reloaded) is self.model_class
        with torch.no_grad():
            before, after = self.forward(model), self.forward(reloaded)
        torch.testing.assert_close(self.output(after), self.output(before), rtol=0, atol=0)
        torch.testing.assert_close(after.loss, before.loss, rtol=0, atol=0)
        assert type(AutoModel.from_pretrained(tmp_path)) is (self.bare_model_class or self.model_class)

    def test_return_dict_false_returns_a_tuple_led_by_the_loss(self):
        model = self.make_model()
        with torch.no_grad():
            as_dict = self.forward(model)
            as_tuple = self.forward(model, return_dict=False)
            model.config.return_dict = False  # the config's setting is the default when the call gives none
            by_config = self.forward(model)
        assert as_dict.loss is not None
        for out in (as_tuple, by_config):
            assert isinstance(out, tuple), type(out)
            torch.testing.assert_close(out[0], as_dict.loss, rtol=0, atol=0)
            torch.testing.assert_close(out, as_dict.to_tuple(), rtol=0, atol=0)  # the same fields, in field order

    def test_gradient_checkpointing_recomputes_blocks_and_gives_the_same_gradients(self):
        assert self.model_class.supports_gradient_checkpointing, "every architecture here has repeated blocks"
        gradients, recomputed = [], []
        for checkpointing in (False, True):
            model = self.make_model().train()
            if checkpointing:
                model.activation_checkpointing_enable()
            calls = []
            hooks = [m.register_forward_hook(lambda *_: calls.append(1)) for m in model.modules()]
            loss = self.forward(model).loss
            in_forward = len(calls)
            loss.backward()
            recomputed.append(len(calls) - in_forward)  # module calls during backward: checkpointed blocks rerun
            for hook in hooks:
                hook.remove()
            gradients.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
        assert recomputed[0] == 0 and recomputed[1] > 0, f"checkpointing did not recompute any block: {recomputed}"
        plain, checkpointed = gradients
        assert plain.keys() == checkpointed.keys() and plain
        for name in plain:
            # The same operations in the same order on the same numbers: identical up to float32 rounding.
            torch.testing.assert_close(checkpointed[name], plain[name], msg=lambda m, name=name: f"{name}: {m}")

    def test_bf16_autocast_gives_a_finite_loss_close_to_float32(self):
        model = self.make_model()
        with torch.no_grad():
            fp32_out = self.forward(model)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                bf16_out = self.forward(model)
        fp32, bf16 = fp32_out.loss, bf16_out.loss
        assert torch.isfinite(bf16)
        assert bf16.item() != fp32.item(), "autocast changed nothing: the forward did not run in bf16"
        relative = abs(bf16.item() - fp32.item()) / abs(fp32.item())
        assert relative < self.bf16_loss_rtol, f"bf16 loss {bf16.item()} vs fp32 {fp32.item()}: {relative:.2e} off"
        # The loss averages many values and can hide a wrong cast inside the network (a timestep rounded to bf16:
        # 700 becomes 704); the output cannot.
        expected, output = self.output(fp32_out), self.output(bf16_out).float()
        assert torch.isfinite(output).all()
        error = (output - expected).norm() / expected.norm()
        assert error < self.bf16_output_rtol, f"bf16 output {error:.2e} off in relative norm"
        # Nor may any single value be far off (measured: at most 3.7e-2 of the largest value).
        assert (output - expected).abs().max() < 0.1 * expected.abs().max()

    def test_adamw_learns_a_fixed_batch_and_a_zero_learning_rate_control_stays_put(self):
        model = self.make_model()
        control = self.train_steps(model, model.parameters(), 0.0, self.learning_steps)
        # The batch, its noise and the model are fixed, so without updates the loss cannot move: any fall below is
        # learning, not luck of the draw.
        assert control == [control[0]] * len(control), control
        model = self.make_model()
        losses = self.train_steps(model, model.parameters(), self.learning_rate, self.learning_steps)
        assert losses[0] == control[0]
        if self.learning_ratio is not None:
            assert losses[0] > 0 and losses[-1] < self.learning_ratio * losses[0], losses
        else:
            assert losses[-1] < losses[0] - self.learning_drop, losses

    def test_lora_trains_only_the_declared_adapters_which_change_the_output_and_reload(self, tmp_path):
        untouched = self.make_model()
        base = self.make_model()
        frozen = {name: t.clone() for name, t in base.state_dict().items()}  # buffers too: they are base weights
        model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=self.lora_target_modules))

        trainable = [name for name, p in model.named_parameters() if p.requires_grad]
        assert trainable and all(".lora_" in name for name in trainable), trainable
        # peft wraps each target in place, so the wrapped model keeps the module names of the untouched one.
        adapted = {name for name, module in base.named_modules() if hasattr(module, "lora_A")}
        names = [name for name, _ in untouched.named_modules()]
        for pattern in self.lora_promised_modules:
            promised = {name for name in names if re.search(pattern, name)}
            assert promised, f"{pattern!r} matches no module of the model"
            assert promised <= adapted, f"promised by {pattern!r} but not adapted: {sorted(promised - adapted)}"
        stray = {name for name in adapted if not any(re.search(p, name) for p in self.lora_promised_modules)}
        assert not stray, f"adapted beyond what the declaration promises: {sorted(stray)}"

        losses = self.train_steps(model, [p for p in model.parameters() if p.requires_grad], 1e-2, 5)
        assert losses[-1] < losses[0], losses
        # Every adapter must train, not just enough of them to lower the loss: lora_B starts at zero and gets a
        # gradient only if its module's output is used, so a forward that bypasses a wrapped module (F.linear on its
        # weight, say) leaves that module's adapter at exactly zero.
        idle = [name for name, p in model.named_parameters() if ".lora_B." in name and not p.detach().abs().max() > 0]
        assert not idle, f"adapters that training never reached (their module's output is unused): {idle}"
        base_state = {name.replace(".base_layer", ""): t for name, t in model.get_base_model().state_dict().items()
                      if ".lora_" not in name}
        assert base_state.keys() == frozen.keys()
        for name, tensor in base_state.items():
            torch.testing.assert_close(tensor, frozen[name], rtol=0, atol=0, msg=lambda m, name=name: f"{name}: {m}")

        model.eval()
        with torch.no_grad():
            expected = self.output(self.forward(model))
            with model.disable_adapter():
                without = self.output(self.forward(model))
            base_output = self.output(self.forward(untouched))
        # Trained adapters must move the output by far more than rounding; with them off, the base model is back.
        assert (expected - without).abs().max() > 100 * REORDERED_FLOAT32["atol"], "the adapters change nothing"
        torch.testing.assert_close(without, base_output, **REORDERED_FLOAT32)

        model.save_pretrained(tmp_path)
        assert (tmp_path / "adapter_model.safetensors").exists()
        fresh = self.model_class(untouched.config).eval()
        fresh.load_state_dict(frozen)
        reloaded = PeftModel.from_pretrained(fresh, tmp_path).eval()
        with torch.no_grad():
            torch.testing.assert_close(self.output(self.forward(reloaded)), expected, **REORDERED_FLOAT32)
