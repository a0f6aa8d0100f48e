# %% [markdown]
# # Stepping through a campaign from a notebook
#
# The same campaign as `sdl run examples/tio2_bo.yaml`, in the same catalog, but every
# proposal of the agent waits here until you approve it (as proposed or edited) or reject it.
# Run the cells from the repository's root (in Jupyter, VS Code or `python` as a script).
# Stop whenever you like: `sdl run examples/tio2_bo.yaml --budget 6` resumes it from the
# catalog, and opening it here again continues what the command line began.

# %%
import os

from sdl.loop.notebook import NotebookCampaign, as_text

campaign = NotebookCampaign.open(
    "examples/tio2_bo.yaml",
    data_dir=os.environ.get("SDL_DATA_DIR", "sdl-data"),
    budget=6,
    agent={"name": "bayesian", "options": {"n_initial": 2}},
    who="notebook user",
)
units = {name: p.unit for name, p in campaign.config.search_space.items()}

# %% [markdown]
# The first proposals: the agent places a few points to fill the space before its model
# has anything to say, so they come without a belief.

# %%
for _ in range(2):
    (proposal,) = campaign.proposals()
    print("proposed:", as_text(proposal, units))
    campaign.approve(proposal, "first look")
    campaign.wait(experiments=len(campaign.result.records) + 1)
print(campaign.table())

# %% [markdown]
# Now the model predicts the objective (mean and standard deviation) at each proposal. Cool
# down any proposal above 800 degC, and reject one that the model is very unsure of.

# %%
while len(campaign.result.records) < 4:
    (proposal,) = campaign.proposals()
    print("proposed:", as_text(proposal, units))
    std = proposal.belief.get("photoactive_area_m2_g_predicted_std", 0.0)
    if std > 40:
        campaign.reject(proposal, f"the model is too unsure (std {std:.0f} m2/g)")
        continue  # the agent proposes again
    if proposal.conditions["temperature_c"] > 800:
        campaign.approve(proposal, "cooler is kinder to the furnace", temperature_c=750.0)
    else:
        campaign.approve(proposal, "looks reasonable")
    campaign.wait(experiments=len(campaign.result.records) + 1)

# %% [markdown]
# The results so far, and the best. Stopping here leaves the rest of the budget for
# `sdl run` (or this notebook, opened again).

# %%
for row in campaign.table():
    print(row)
best = campaign.result.best
print("best:", best.features["photoactive_area_m2_g"] if best else None)
campaign.stop()
