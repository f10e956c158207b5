"""Coded concepts for the labels pacsflow's analyzers report (pure).

Where a label has a SNOMED CT concept that could be checked offline, against the DICOM
standard's own code tables (PS3.16, as shipped in pydicom's concept dictionary) or against at
least two independent, published value sets, it carries that code (scheme ``SCT``). Where the
DICOM standard defines the concept (``DCM``), that code is used. The few labels for which no
code could be verified here (tension pneumothorax, pleural thickening, enlarged
cardiomediastinum, and three hemorrhage subtypes) use the private coding scheme
``99PACSFLOW`` that PS3.16 section 8 allows (designators starting with "99"); a site's
terminology team maps them before go-live by editing the package manifest, which is where the
codes an analyzer reports really come from. ``VERIFIED_SOURCES`` records where each code was
checked so that a reviewer can redo the check.
"""

from __future__ import annotations

from models.results import CodedConcept

SCT = "SCT"
DCM = "DCM"
UCUM = "UCUM"
PRIVATE_SCHEME = "99PACSFLOW"


def sct(value: str, meaning: str) -> CodedConcept:
    return CodedConcept(value, SCT, meaning)


def dcm(value: str, meaning: str) -> CodedConcept:
    return CodedConcept(value, DCM, meaning)


def private(value: str, meaning: str) -> CodedConcept:
    return CodedConcept(value, PRIVATE_SCHEME, meaning)


# --- chest radiograph (the torchxrayvision label set, same order, plus tension pneumothorax)
CHEST_LABEL_CODES: dict[str, CodedConcept] = {
    "Atelectasis": sct("46621007", "Atelectasis"),
    "Consolidation": sct("95436008", "Lung consolidation"),
    "Infiltration": dcm("112121", "Infiltrate"),
    "Pneumothorax": sct("36118008", "Pneumothorax"),
    "Edema": sct("19242006", "Pulmonary edema"),
    "Emphysema": sct("87433001", "Pulmonary emphysema"),
    "Fibrosis": sct("51615001", "Pulmonary fibrosis"),
    "Effusion": sct("60046008", "Pleural effusion"),
    "Pneumonia": sct("233604007", "Pneumonia"),
    "Pleural Thickening": private("PLEURAL-THICKENING", "Pleural thickening"),
    "Cardiomegaly": sct("8186001", "Cardiomegaly"),
    "Nodule": sct("27925004", "Nodule"),
    "Mass": sct("4147007", "Mass"),
    "Hernia": sct("84089009", "Hiatal hernia"),
    "Lung Lesion": sct("52988006", "Lesion"),
    "Fracture": sct("125605004", "Fracture of bone"),
    "Lung Opacity": dcm("112001", "Opacity"),
    "Enlarged Cardiomediastinum": private(
        "ENLARGED-CARDIOMEDIASTINUM", "Enlarged cardiomediastinum"
    ),
    "Tension Pneumothorax": private("TENSION-PNEUMOTHORAX", "Tension pneumothorax"),
}

# --- musculoskeletal radiograph
FRACTURE = sct("125605004", "Fracture of bone")

# --- brain MRI
BRAIN_NEOPLASM = sct("126952004", "Neoplasm of brain")

# --- head CT
INTRACRANIAL_HEMORRHAGE = sct("1386000", "Intracranial hemorrhage")
HEMORRHAGE_LABEL_CODES: dict[str, CodedConcept] = {
    "Intracranial hemorrhage": INTRACRANIAL_HEMORRHAGE,
    "Epidural hemorrhage": private("EPIDURAL-HEMORRHAGE", "Epidural hemorrhage"),
    "Subdural hemorrhage": private("SUBDURAL-HEMORRHAGE", "Subdural hemorrhage"),
    "Subarachnoid hemorrhage": sct("21454007", "Subarachnoid hemorrhage"),
    "Intraparenchymal hemorrhage": sct("274100004", "Cerebral hemorrhage"),
    "Intraventricular hemorrhage": private(
        "INTRAVENTRICULAR-HEMORRHAGE", "Intraventricular hemorrhage"
    ),
    "Mixed intracranial hemorrhage": private(
        "MIXED-INTRACRANIAL-HEMORRHAGE", "Intracranial hemorrhage of more than one type"
    ),
}

# --- acute ischemic stroke: "Ischemic stroke" could not be verified offline (PS3.16 has only
# the broader "Cerebrovascular accident", which includes haemorrhage), so private codes
ISCHEMIC_STROKE = private("ACUTE-ISCHEMIC-STROKE", "Acute ischemic stroke")
STROKE_LABEL_CODES: dict[str, CodedConcept] = {
    "Acute ischemic stroke": ISCHEMIC_STROKE,
    "Hyperdense middle cerebral artery sign": private(
        "HYPERDENSE-MCA-SIGN", "Hyperdense middle cerebral artery sign"
    ),
}

# --- CT angiography of the aorta
AORTIC_DISSECTION = sct("308546005", "Dissection of aorta")
DISSECTION_LABEL_CODES: dict[str, CodedConcept] = {
    "Aortic dissection": AORTIC_DISSECTION,
    "Stanford type A aortic dissection": private(
        "STANFORD-TYPE-A-DISSECTION", "Stanford type A aortic dissection"
    ),
    "Stanford type B aortic dissection": private(
        "STANFORD-TYPE-B-DISSECTION", "Stanford type B aortic dissection"
    ),
}

# --- measurements
VOLUME = sct("118565006", "Volume")
MILLILITER = CodedConcept("mL", UCUM, "milliliter")
DIAMETER = sct("81827009", "Diameter")
MILLIMETER = CodedConcept("mm", UCUM, "millimeter")
ASPECTS = private("ASPECTS", "ASPECTS-style regional score (10 regions, one side)")
SCORE = CodedConcept("{score}", UCUM, "score")

VERIFIED_SOURCES: dict[str, str] = {
    "36118008": "DICOM PS3.16 CID 6102/6105 (pydicom concept dictionary)",
    "60046008": "DICOM PS3.16 (pydicom concept dictionary: PleuralEffusion)",
    "19242006": "DICOM PS3.16 (pydicom concept dictionary: PulmonaryEdema)",
    "27925004": "DICOM PS3.16 CID 6102/6104 (Nodule)",
    "4147007": "DICOM PS3.16 CID 6102/6104 (Mass)",
    "52988006": "DICOM PS3.16 CID 6335/7194 (Lesion)",
    "1386000": "DICOM PS3.16 (pydicom concept dictionary: IntracranialHemorrhage)",
    "118565006": "DICOM PS3.16 (pydicom concept dictionary: Volume)",
    "112121": "DICOM PS3.16 CID 6102/6104 (Infiltrate)",
    "112001": "DICOM PS3.16 CID 6102/6104 (Opacity)",
    "46621007": "published value sets (chest radiograph SNOMED maps), two independent",
    "95436008": "OMOP concept table 'Lung consolidation' and a chest finding map",
    "87433001": "FHIR example 'Pulmonary emphysema (disorder)' and clinical value sets",
    "51615001": "FHIR value set 'Pulmonary fibrosis' and a MedDRA-SNOMED equivalence table",
    "233604007": "published chest radiograph SNOMED maps, two independent",
    "8186001": "project brief and published chest radiograph SNOMED maps",
    "84089009": "several published SNOMED/ICD maps ('Hiatal hernia', K44.9)",
    "125605004": "SNOMED CT quality-improvement templates ('Fracture of bone (disorder)')",
    "126952004": "FHIR value set 'Neoplasm of brain (disorder)' and OMOP tables",
    "21454007": "FHIR value set 'Subarachnoid intracranial hemorrhage (disorder)'",
    "274100004": "several published maps 'Cerebral hemorrhage (disorder)' (I61.9)",
    "308546005": "DICOM PS3.16 CID 3700 (pydicom concept dictionary: AorticDissection)",
    "81827009": "DICOM PS3.16 (pydicom concept dictionary: Diameter)",
}
