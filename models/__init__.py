"""What we deploy: PyTorch MobileNet definitions and a registry of named constructors.

Module names of V2/V3 follow torchvision's (``features.N...``, ``classifier.N``), so a
state_dict saved from torchvision's ``mobilenet_v2``, ``mobilenet_v3_large`` or
``mobilenet_v3_small`` loads without remapping.
"""
from edgeexport.models.registry import FAMILIES, Family, create_model, family, family_of_alias

__all__ = ["FAMILIES", "Family", "create_model", "family", "family_of_alias"]
