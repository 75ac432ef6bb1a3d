"""Train: launch a training job, follow the queue and the running job live, cancel."""

from pathlib import Path

import streamlit as st

from nsclc_engine import access
from nsclc_engine.dashboard import runs as runs_view
from nsclc_engine.dashboard import train as page
from nsclc_engine.evaluate import figures
from nsclc_engine.task_spec import LABEL_CHOICES, TASKS
from nsclc_engine.train import jobs
from nsclc_engine.train.config import BACKBONES
from ui.common import artifacts, audit, authorize, data_roots, load, require_page

st.title("Train")
user = require_page("train")

protocol = st.selectbox(
    "Protocol (starting settings)",
    list(page.PROTOCOL_NOTES),
    format_func=lambda name: f"{name}: {page.PROTOCOL_NOTES[name][0]}",
    key="train_protocol",
)
st.caption(page.PROTOCOL_NOTES[protocol][1])
start = page.protocol_defaults(protocol)


def choice(column, name: str, options: list, **kwargs):
    """A select box opening at the protocol's value (its key changes with the protocol)."""
    return column.selectbox(
        name, options, index=options.index(start[kwargs.pop("field")]), **kwargs
    )


roots = data_roots()
if not roots:
    st.caption(
        "No data root is registered: as the local user you may give any path on this machine "
        "(a served dashboard reads DICOM only inside roots an admin registers)."
    )
with st.form("launch"):
    source = st.radio(
        "Data",
        ["demo", "dicom"],
        horizontal=True,
        format_func={
            "demo": "synthetic demo cohort",
            "dicom": "DICOM folder + clinical CSV on this server",
        }.get,
    )
    if roots:
        root = st.selectbox("Data root (registered by an admin)", [str(r) for r in roots])
        inside = st.columns(2)
        dicom = inside[0].text_input("DICOM folder inside the root (for DICOM data)")
        clinical = inside[1].text_input("Clinical CSV inside the root (for DICOM data)")
        dicom, clinical = (
            str(Path(root) / p.strip()) if p.strip() else "" for p in (dicom, clinical)
        )
    else:
        dicom = st.text_input("DICOM folder (for DICOM data)")
        clinical = st.text_input("Clinical CSV (for DICOM data)")
    a, b, c = st.columns(3)
    k = f"_{protocol}"  # widgets open at the chosen protocol's values
    task = c.selectbox(
        "Task",
        list(TASKS),
        help="survival: a Cox head on survival time, deadstatus_event as the event",
        key="task" + k,
    )
    label = choice(a, "Label (classification)", list(LABEL_CHOICES), field="label", key="label" + k)
    preset = choice(b, "Preset", ["demo", "paper"], field="preset", key="preset" + k)
    crop_mode = choice(
        c,
        "Crop",
        ["fixed_fov", "bbox", ""],
        field="crop_mode",
        format_func=lambda m: m or "preset's (bbox)",
        key="crop" + k,
    )
    epochs = a.number_input("Max epochs", 1, 500, start["epochs"], key="epochs" + k)
    batch_size = b.number_input("Batch size", 1, 256, start["batch_size"], key="batch" + k)
    lr = c.number_input("Learning rate", 0.0, 1.0, start["lr"], format="%.5f", key="lr" + k)
    folds = a.number_input("Folds (0 = one split)", 0, 20, 0, key="folds" + k)
    seed = b.number_input("Seed", 0, 10**6, 0, key="seed" + k)
    seeds = c.text_input(
        "Seeds of an experiment (optional)",
        key="seeds" + k,
        placeholder="0,1,2,3,4",
        help="The same settings once per seed, one queued run each, summarised over the seeds "
        "(mean ± SD on every page); empty: one run with the seed beside",
    )
    experiment = c.text_input("Experiment name (optional)", key="experiment" + k)
    augment = choice(
        c,
        "Augmentation",
        ["all", "off", "minority"],
        field="augment",
        help="minority: the report's scheme, a label cue (the rotation smooths only one class)",
        key="augment" + k,
    )
    use_sampler = a.checkbox("Balanced sampler", start["use_sampler"], key="sampler" + k)
    use_class_weights = b.checkbox("Class weights", start["use_class_weights"], key="weights" + k)
    shuffle_labels = c.checkbox("Shuffle labels (negative control)", False, key="shuffle" + k)
    model = choice(
        a,
        "Network",
        list(BACKBONES),
        field="model",
        help="MONAI 3D networks: ResNets of MedicalNet's family, FMCIB's wide ResNet-50, "
        "DenseNet-121 (demo or paper preset), SE-ResNet-50, a small ViT (saliency only)",
        key="model" + k,
    )
    pretrained = st.selectbox(
        "Pretrained weights (a MedicalNet or FMCIB file in artifacts/weights, optional)",
        ["", *access.weight_files(artifacts())],
        format_func=lambda name: name or "none: train from scratch",
        help="Its network must be the one chosen above: resnetN for MedicalNet's resnet_N "
        "files, fmcib for FMCIB's. An admin puts weight files into artifacts/weights; no "
        "other file is loaded.",
    )
    encoder = st.radio(
        "Pretrained encoder",
        ["fine-tune", "freeze"],
        horizontal=True,
        help="fine-tune: the encoder learns at a tenth of the learning rate; freeze: only the "
        "new head learns",
    )
    submitted = st.form_submit_button("Launch", type="primary")

if submitted:
    actor = authorize("launch_job")
    config, errors = page.validate_train_form(
        {
            "source": source,
            "protocol": protocol,
            "dicom": dicom,
            "clinical": clinical,
            "label": label,
            "task": task,
            "preset": preset,
            "crop_mode": crop_mode,
            "epochs": int(epochs),
            "batch_size": int(batch_size),
            "lr": float(lr),
            "folds": int(folds),
            "seed": int(seed),
            "augment": augment,
            "use_sampler": use_sampler,
            "use_class_weights": use_class_weights,
            "shuffle_labels": shuffle_labels,
            "model": model,
            "pretrained": pretrained,
            "encoder": encoder if pretrained.strip() else "fine-tune",
        },
        artifacts(),
        actor,
        data_roots(),
    )
    for error in errors:
        st.error(error)
    launches = [("", config)] if config is not None else []
    if config is not None and seeds.strip():
        launches, errors = page.experiment_launches(config, seeds, experiment, artifacts())
        for error in errors:
            st.error(error)
    queued = []
    for run_id, each in launches:
        queued.append(jobs.launch(each, artifacts(), run_id))
        audit(actor, "launch_job", queued[-1], data=each.dicom or "demo", model=each.model)
    if queued:
        st.session_state.pending_run_id = queued[0]  # the sidebar picks it up on the next run
        st.success(f"Queued {', '.join(queued)}.")


@st.fragment(run_every=2)
def live() -> None:
    runs = runs_view.runs_overview(artifacts())
    active = runs[runs.state.isin(["queued", "running"])]
    st.subheader("Queue")
    if active.empty:
        st.caption("No job queued or running.")
    else:
        st.dataframe(
            active[["run_id", "state", "progress", "label", "preset", "created"]], hide_index=True
        )
    run_id = st.session_state.get("run_id")
    if not run_id or run_id not in runs.run_id.values:
        return
    view = load(run_id)
    state = view.status.get("state")
    st.subheader(f"Run {run_id}: {state}")
    st.progress(float(view.status.get("progress", 0.0)))
    if view.status.get("error"):
        st.error(view.status["error"])
    if view.history:
        st.plotly_chart(figures.training_curves_figure(view.history), key=f"curves_{run_id}")
    tail = page.log_tail(view.run_dir)
    if tail:
        st.code(tail, language=None)
    if state in ("queued", "running") and st.button("Cancel this job", key=f"cancel_{run_id}"):
        actor = authorize("cancel_job")
        jobs.cancel(run_id, artifacts())
        audit(actor, "cancel_job", run_id)
        st.warning("Cancel requested; the last checkpoint is kept.")


live()
