"""The names of the labels pacsflow's analyzers report (pure constants).

One table per analyzer, shared by the analyzer (the labels a package must provide), the
phantom generator that draws the findings, the demo recipe that trains on them and the
torchxrayvision converter. :mod:`models.codes` gives each name its coded concept.
"""

from __future__ import annotations

# --- chest radiograph: torchxrayvision's 18 pathologies in its output order (there
# "Pleural_Thickening"), then tension pneumothorax, which only pacsflow-trained packages report
CHEST_CORE_LABELS = (
    "Atelectasis",
    "Consolidation",
    "Infiltration",
    "Pneumothorax",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Effusion",
    "Pneumonia",
    "Pleural Thickening",
    "Cardiomegaly",
    "Nodule",
    "Mass",
    "Hernia",
    "Lung Lesion",
    "Fracture",
    "Lung Opacity",
    "Enlarged Cardiomediastinum",
)
TENSION_PNEUMOTHORAX = "Tension Pneumothorax"
CHEST_LABELS = (*CHEST_CORE_LABELS, TENSION_PNEUMOTHORAX)
# Chest findings that are lesions (air, fluid or tissue where it should not be): a heatmap peak
# can be checked against their masks. Size and shape findings (cardiomegaly, widened
# mediastinum, emphysema) and diffuse patterns (edema, fibrosis, infiltration) have no such spot.
CHEST_FOCAL_LABELS = (
    "Pneumothorax",
    TENSION_PNEUMOTHORAX,
    "Effusion",
    "Mass",
    "Nodule",
    "Consolidation",
    "Hernia",
    "Fracture",
)

# --- musculoskeletal radiograph
FRACTURE = "Fracture"

# --- brain MRI
BRAIN_TUMOR = "Brain tumor"

# --- non-contrast head CT: any haemorrhage, five types, and "mixed" (derived: two or more)
ANY_HEMORRHAGE = "Intracranial hemorrhage"
HEMORRHAGE_SUBTYPES = (
    "Epidural hemorrhage",
    "Subdural hemorrhage",
    "Subarachnoid hemorrhage",
    "Intraparenchymal hemorrhage",
    "Intraventricular hemorrhage",
)
MIXED_HEMORRHAGE = "Mixed intracranial hemorrhage"

# --- acute ischemic stroke (non-contrast head CT and diffusion MRI)
ISCHEMIC_STROKE = "Acute ischemic stroke"
DENSE_VESSEL_SIGN = "Hyperdense middle cerebral artery sign"

# --- CT angiography of the aorta: an intimal flap anywhere, and its Stanford type. The
# network's type A output is "flap in the ascending aorta or arch on this slice", its type B
# output "flap in the descending aorta on this slice"; the study is type A when the ascending
# aorta is involved, type B when only the descending aorta is.
AORTIC_DISSECTION = "Aortic dissection"
STANFORD_TYPE_A = "Stanford type A aortic dissection"
STANFORD_TYPE_B = "Stanford type B aortic dissection"
