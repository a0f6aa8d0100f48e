"""Train the RL agent's policy on randomised TiO2 campaigns: ``sdl train-rl --out PATH``.

Environment. One episode is a campaign of ``--horizon`` experiments on one *instance* of the
TiO2 sol-gel simulator (``simulators.tio2.TiO2SolGel``) whose physics is drawn at random
(domain randomisation): activation energies, reference temperatures, growth rates, sol
chemistry (pH of brookite and of the isoelectric point, acid and water effects), particle
sizes and agglomeration, batch-to-batch variation, furnace scatter and measurement noise. The
objective is the photoactive area (``sdl.analysis.properties``) over the search space of
``examples/tio2_bo.yaml``. Each experiment is noisy like a real batch (perturbed conditions
and rate constants, then relative measurement noise); the score uses the noise-free truth.

Reward. After each experiment, the true objective at the best *measured* point so far (what a
campaign would report), normalised per instance as ``(f - median) / (optimum - median)``
(median and optimum over a Sobol design of the box), so every instance weighs the same.

Learning. PPO (clipped surrogate, several epochs per batch) with returns-to-go and a per-step
baseline (the batch mean), advantages standardised, a small entropy bonus.

Instances are drawn from two separate random streams: training from ``(TRAIN_STREAM, seed,
i)``, evaluation from ``(HELD_OUT_STREAM, i)``, so evaluation instances are never trained on.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize
from scipy.stats import qmc

from agents import Agent, Objective, Parameter, RandomAgent, SearchSpace
from agents.rl import HistoryPolicy, RLAgent, action_distribution, save_policy
from physics.phases import TIO2_PHASES
from sdl.analysis.properties import (
    PHASE_PHOTOACTIVITY,
    TIO2_DENSITY_G_CM3,
    specific_surface_area_m2_g,
)
from simulators.tio2 import TiO2SolGel

logger = logging.getLogger(__name__)

#: Where ``sdl train-rl`` writes the policy unless told otherwise.
DEFAULT_WEIGHTS = Path("models/rl_tio2.pt")

#: The search space of ``examples/tio2_bo.yaml`` (the policy is trained for this box).
TIO2_SPACE = SearchSpace(
    (
        Parameter("temperature_c", 250.0, 950.0, "degC"),
        Parameter("duration_h", 0.25, 12.0, "h"),
        Parameter("ph", 1.0, 10.0, "pH"),
        Parameter("h2o_ti_ratio", 2.0, 60.0, "mol/mol"),
    )
)
TIO2_OBJECTIVE = Objective("photoactive_area_m2_g", "maximize")

#: Random streams of training and of held-apart evaluation instances.
TRAIN_STREAM, HELD_OUT_STREAM = 0, 1

#: Relative (log-normal) spread of the randomised multiplicative parameters of ``TiO2SolGel``.
RELATIVE_SPREAD = {
    "crystallisation_ea_kj_mol": 0.1,
    "anatase_rutile_ea_kj_mol": 0.1,
    "brookite_rutile_ea_kj_mol": 0.1,
    "anatase_growth_ea_kj_mol": 0.15,
    "rutile_growth_ea_kj_mol": 0.15,
    "sintering_ea_kj_mol": 0.15,
    "anatase_growth_rate_nm_n_h": 0.7,
    "rutile_growth_rate_nm_n_h": 0.7,
    "primary_size_nm": 0.2,
    "acid_rutile_advance_c": 0.3,
    "low_water_rutile_advance_c": 0.3,
    "brookite_max_fraction": 0.3,
    "disordered_shell_nm": 0.3,
    "agglomeration_base": 0.15,
    "agglomeration_iep_gain": 0.3,
    "sintering_gain": 0.3,
}

#: Standard deviation of the randomised temperatures (degC) and pH values of ``TiO2SolGel``.
ABSOLUTE_SPREAD = {
    "crystallisation_t_ref_c": 40.0,
    "anatase_rutile_t_ref_c": 50.0,
    "growth_t_ref_c": 50.0,
    "rutile_growth_t_ref_c": 50.0,
    "sintering_t_ref_c": 50.0,
    "shell_annealing_t_ref_c": 40.0,
    "brookite_ph": 0.5,
    "isoelectric_ph": 1.0,
}

#: Uniform ranges of the noise of an instance: batch variation, furnace scatter (degC), and
#: the relative noise of the measured objective.
NOISE_RANGES = {
    "batch_variation": (0.01, 0.06),
    "furnace_temperature_std_c": (1.0, 10.0),
    "measurement_noise": (0.01, 0.05),
}

#: Sobol points on which each instance's median and optimum are estimated (a power of 2).
SCALE_DESIGN_POINTS = 2048


def photoactive_area(
    model: TiO2SolGel, conditions: np.ndarray, rate_factors: np.ndarray | None = None
) -> np.ndarray:
    """True photoactive area (m^2/g) of ``n x 4`` conditions (``TIO2_SPACE`` column order).

    Vectorised twin of ``TiO2SolGel.expected`` followed by ``true_features``: negative phase
    fractions clipped, fractions renormalised, phase-weighted activity times surface area.
    """
    temperature_c, duration_h, ph, h2o_ti_ratio = np.asarray(conditions, dtype=float).T
    arrays = model.state_arrays(temperature_c, duration_h, ph, h2o_ti_ratio, rate_factors)
    fractions = np.stack([np.maximum(arrays[f"fraction_{p}"], 0.0) for p in TIO2_PHASES])
    activity = np.array([PHASE_PHOTOACTIVITY[p] for p in TIO2_PHASES]) @ (
        fractions / fractions.sum(axis=0)
    )
    return activity * specific_surface_area_m2_g(arrays["particle_size_nm"], TIO2_DENSITY_G_CM3)


def random_model(rng: np.random.Generator, spread_scale: float = 1.0) -> TiO2SolGel:
    """A ``TiO2SolGel`` whose physics and noise are drawn around the defaults.

    ``spread_scale`` multiplies every physical spread (not the noise ranges): above 1 it
    draws instances from a wider family than the policy was trained on.
    """
    default = TiO2SolGel()
    changes = {
        name: getattr(default, name) * float(np.exp(rng.normal(0.0, spread_scale * spread)))
        for name, spread in RELATIVE_SPREAD.items()
    }
    changes |= {
        name: getattr(default, name) + float(rng.normal(0.0, spread_scale * spread))
        for name, spread in ABSOLUTE_SPREAD.items()
    }
    changes["batch_variation"] = float(rng.uniform(*NOISE_RANGES["batch_variation"]))
    changes["furnace_temperature_std_c"] = float(
        rng.uniform(*NOISE_RANGES["furnace_temperature_std_c"])
    )
    return dataclasses.replace(default, **changes)


@dataclass(frozen=True)
class Instance:
    """One randomised simulator: its physics, its measurement noise and its objective's scale.

    ``median`` and ``optimum`` are the median and the best true objective over a Sobol design
    of the box (``refined_optimum`` polishes the latter); they normalise rewards and regrets.
    """

    model: TiO2SolGel
    measurement_noise: float
    median: float
    optimum: float

    def truth(self, unit_x: np.ndarray) -> np.ndarray:
        """True objective at ``n x d`` unit-cube points."""
        return photoactive_area(self.model, TIO2_SPACE.from_unit(np.atleast_2d(unit_x)))

    def measure(self, unit_x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Measured objective at ``n x d`` unit-cube points: one noisy batch per point.

        As ``TiO2SolGel.synthesize``: furnace temperature scatter, log-normal perturbations of
        duration, pH, ratio and the six rate constants; then relative measurement noise.
        """
        conditions = TIO2_SPACE.from_unit(np.atleast_2d(unit_x))
        n = len(conditions)
        variation = self.model.batch_variation
        applied = conditions * np.exp(rng.normal(0.0, variation, size=(n, 4)))
        applied[:, 0] = conditions[:, 0] + rng.normal(
            0.0, self.model.furnace_temperature_std_c, size=n
        )
        values = np.array(
            [
                photoactive_area(self.model, row[None], np.exp(rng.normal(0.0, variation, 6)))[0]
                for row in applied
            ]
        )
        return values * (1.0 + self.measurement_noise * rng.normal(size=n))

    def normalised(self, values: np.ndarray) -> np.ndarray:
        """``(f - median) / (optimum - median)``: 0 at the median of the box, 1 at the optimum."""
        return (np.asarray(values) - self.median) / (self.optimum - self.median)


def draw_instance(rng: np.random.Generator, spread_scale: float = 1.0) -> Instance:
    """A randomised simulator instance, with its scale estimated on a Sobol design."""
    model = random_model(rng, spread_scale)
    noise = float(rng.uniform(*NOISE_RANGES["measurement_noise"]))
    design = qmc.Sobol(TIO2_SPACE.dim, seed=0).random(SCALE_DESIGN_POINTS)
    values = photoactive_area(model, TIO2_SPACE.from_unit(design))
    return Instance(model, noise, float(np.median(values)), float(values.max()))


def instance_rng(stream: int, *keys: int) -> np.random.Generator:
    """The generator of one instance: training and held-apart streams never share a draw."""
    return np.random.default_rng([stream, *keys])


def held_out_instances(count: int, spread_scale: float = 1.0) -> list[Instance]:
    """The first ``count`` held-apart instances (the same for every training seed)."""
    return [draw_instance(instance_rng(HELD_OUT_STREAM, i), spread_scale) for i in range(count)]


def refined_optimum(instance: Instance, starts: int = 5) -> Instance:
    """The instance with its optimum polished by L-BFGS-B from the best design points."""
    design = qmc.Sobol(TIO2_SPACE.dim, seed=0).random(SCALE_DESIGN_POINTS)
    values = instance.truth(design)
    best = instance.optimum
    for start in design[np.argsort(values)[-starts:]]:
        found = minimize(
            lambda u: -instance.truth(u)[0],
            start,
            method="L-BFGS-B",
            bounds=[(0.0, 1.0)] * TIO2_SPACE.dim,
        )
        best = max(best, -float(found.fun))
    return dataclasses.replace(instance, optimum=best)


def run_agent(
    agent: Agent, instance: Instance, budget: int, rng: np.random.Generator
) -> np.ndarray:
    """One campaign of ``budget`` experiments; the true objective at the reported best after each.

    The reported best is the point with the best *measured* value so far.
    """
    name = TIO2_OBJECTIVE.name
    reported = []
    for _ in range(budget):
        (suggestion,) = agent.suggest(1)
        unit = TIO2_SPACE.to_unit(TIO2_SPACE.to_array([suggestion]))
        agent.ingest([{"_id": suggestion["_id"], name: float(instance.measure(unit, rng)[0])}])
        _, parameters, _ = agent.get_best_points()[0]
        reported.append(instance.truth(TIO2_SPACE.to_unit(TIO2_SPACE.to_array([parameters])))[0])
    return np.array(reported)


@dataclass(frozen=True)
class Batch:
    """A batch of ``B`` episodes of ``T`` steps, for the PPO update.

    ``unit_x`` is ``B x T x d``, ``logits`` the logit-space actions (``B x T x d``),
    ``measured`` ``B x T``, ``log_prob`` (under the policy that acted) and ``reward`` ``B x T``.
    """

    unit_x: torch.Tensor
    logits: torch.Tensor
    measured: torch.Tensor
    log_prob: torch.Tensor
    reward: torch.Tensor


def prefix_contexts(values: torch.Tensor) -> torch.Tensor:
    """``B x T x ...`` per-episode values as ``(B T) x T x ...``: one history per step."""
    batch, steps = values.shape[:2]
    return (
        values[:, None]
        .expand(batch, steps, *values.shape[1:])
        .reshape(batch * steps, *values.shape[1:])
    )


def prefix_mask(batch: int, steps: int) -> torch.Tensor:
    """``(B T) x T`` mask: the history at step ``t`` holds the points ``j < t``."""
    return torch.ones(steps, steps).tril(-1).bool()[None].expand(batch, -1, -1).reshape(-1, steps)


def rollout(
    policy: HistoryPolicy,
    instances: Sequence[Instance],
    rng: np.random.Generator,
    generator: torch.Generator,
) -> Batch:
    """Play one campaign per instance, all in step with each other, with the current policy."""
    batch, steps, dim = len(instances), policy.horizon, policy.dim
    unit_x = torch.zeros(batch, steps, dim)
    logits = torch.zeros(batch, steps, dim)
    measured = torch.zeros(batch, steps)
    log_prob = torch.zeros(batch, steps)
    truth = np.zeros((batch, steps))
    with torch.no_grad():
        for step in range(steps):
            mask = torch.zeros(batch, steps, dtype=torch.bool)
            mask[:, :step] = True
            distribution = action_distribution(*policy(unit_x, measured, mask))
            action = distribution.loc + distribution.scale * torch.randn(
                batch, dim, generator=generator
            )
            logits[:, step] = action
            log_prob[:, step] = distribution.log_prob(action).sum(-1)
            unit_x[:, step] = torch.sigmoid(action)
            points = unit_x[:, step].double().numpy()
            for b, instance in enumerate(instances):
                measured[b, step] = float(instance.measure(points[b], rng)[0])
                truth[b, step] = instance.normalised(instance.truth(points[b]))[0]
    return Batch(
        unit_x,
        logits,
        measured,
        log_prob,
        torch.as_tensor(reported_truth(measured.numpy(), truth), dtype=torch.float32),
    )


def reported_truth(measured: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``B x T``: the truth at the best measured point (the earliest if tied) of each prefix."""
    steps = measured.shape[1]
    best_index = np.stack([measured[:, : t + 1].argmax(axis=1) for t in range(steps)], axis=1)
    return np.take_along_axis(truth, best_index, axis=1)


def ppo_update(
    policy: HistoryPolicy,
    optimiser: torch.optim.Optimizer,
    episodes: Batch,
    epochs: int = 4,
    clip: float = 0.2,
    entropy_bonus: float = 1e-3,
) -> float:
    """Clipped-surrogate PPO steps on one batch; returns the last surrogate loss.

    Return at step ``t`` = mean reward from ``t`` to the end; advantage = return minus its
    batch mean at that step, divided by the batch's standard deviation.
    """
    batch, steps, dim = episodes.unit_x.shape
    returns = episodes.reward.flip(1).cumsum(1).flip(1) / steps
    advantage = returns - returns.mean(0, keepdim=True)
    advantage = (advantage / (advantage.std() + 1e-8)).reshape(-1)
    contexts = (
        prefix_contexts(episodes.unit_x),
        prefix_contexts(episodes.measured),
        prefix_mask(batch, steps),
    )
    actions = episodes.logits.reshape(-1, dim)
    old_log_prob = episodes.log_prob.reshape(-1)
    for _ in range(epochs):
        distribution = action_distribution(*policy(*contexts))
        ratio = (distribution.log_prob(actions).sum(-1) - old_log_prob).exp()
        surrogate = torch.minimum(
            ratio * advantage, ratio.clamp(1.0 - clip, 1.0 + clip) * advantage
        ).mean()
        loss = -surrogate - entropy_bonus * distribution.entropy().sum(-1).mean()
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimiser.step()
    return loss.item()


def train_policy(
    episodes: int,
    seed: int,
    out: Path,
    horizon: int = 30,
    batch: int = 64,
    hidden: int = 64,
    learning_rate: float = 3e-4,
    save_every: int = 20,
) -> HistoryPolicy:
    """Train a policy on ``episodes`` randomised instances and write it to ``out``.

    The file is rewritten every ``save_every`` batches, so an interrupted run leaves a policy.
    """
    torch.manual_seed(seed)
    policy = HistoryPolicy(TIO2_SPACE.dim, horizon=horizon, hidden=hidden)
    optimiser = torch.optim.Adam(policy.parameters(), lr=learning_rate)
    rng = np.random.default_rng([TRAIN_STREAM, seed])
    generator = torch.Generator().manual_seed(seed)
    batches = max(1, episodes // batch)
    started = time.perf_counter()
    for index in range(batches):
        instances = [
            draw_instance(instance_rng(TRAIN_STREAM, seed, index * batch + b)) for b in range(batch)
        ]
        played = rollout(policy, instances, rng, generator)
        loss = ppo_update(policy, optimiser, played)
        final = played.reward[:, -1]
        logger.info(
            "batch %d/%d: normalised true best after %d steps %.3f (regret %.3f), loss %.3f, "
            "%.0f s",
            index + 1,
            batches,
            horizon,
            float(final.mean()),
            float((1.0 - final).mean()),
            loss,
            time.perf_counter() - started,
        )
        if (index + 1) % save_every == 0 or index + 1 == batches:
            save_policy(
                policy,
                out,
                TIO2_SPACE,
                TIO2_OBJECTIVE,
                {
                    "environment": "tio2-domain-randomised",
                    "seed": seed,
                    "episodes": (index + 1) * batch,
                    "batch": batch,
                    "learning_rate": learning_rate,
                },
            )
    return policy


def held_out_regret(
    agent_factory: Callable[[int], Agent], instances: Sequence[Instance], budget: int
) -> np.ndarray:
    """``len(instances) x budget`` normalised simple regret of fresh agents on each instance."""
    return np.array(
        [
            1.0
            - instance.normalised(
                run_agent(agent_factory(i), instance, budget, instance_rng(HELD_OUT_STREAM, i, 1))
            )
            for i, instance in enumerate(instances)
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sdl train-rl", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_WEIGHTS,
        help=f"where to write the policy (default {DEFAULT_WEIGHTS})",
    )
    parser.add_argument("--episodes", type=int, default=20_000, help="training campaigns")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--horizon", type=int, default=30, help="experiments per campaign")
    parser.add_argument("--batch", type=int, default=64, help="campaigns per PPO update")
    parser.add_argument("--hidden", type=int, default=64, help="width of the network")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    parser.add_argument(
        "--eval-instances",
        type=int,
        default=10,
        help="held-apart instances to compare with random on (0: none)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)

    started = time.perf_counter()
    train_policy(
        args.episodes,
        args.seed,
        args.out,
        horizon=args.horizon,
        batch=args.batch,
        hidden=args.hidden,
    )
    print(
        f"trained on {max(1, args.episodes // args.batch) * args.batch} randomised campaigns "
        f"in {time.perf_counter() - started:.0f} s; wrote {args.out}"
    )
    if args.eval_instances:
        instances = held_out_instances(args.eval_instances)
        for name, factory in (
            ("rl", lambda i: RLAgent(TIO2_SPACE, [TIO2_OBJECTIVE], seed=i, weights=args.out)),
            ("random", lambda i: RandomAgent(TIO2_SPACE, [TIO2_OBJECTIVE], seed=i)),
        ):
            final = held_out_regret(factory, instances, args.horizon)[:, -1]
            print(
                f"{name:>6}: normalised simple regret after {args.horizon} on "
                f"{len(instances)} held-apart instances {final.mean():.3f} "
                f"± {final.std(ddof=1) / np.sqrt(len(final)):.3f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
