"""Published figures, typed from the papers and reference tables (shared/reference/README.md).

These are the independent references the tests assert against; nothing here was produced
by edgeexport.
"""
# tf-slim mobilenet_v1.md, million mult-adds; rows α, columns resolution 224/192/160/128.
V1_MACS_M = {
    1.0: (569, 418, 291, 186), 0.75: (317, 233, 162, 104),
    0.5: (150, 110, 77, 49), 0.25: (41, 34, 21, 14),
}
V1_RESOLUTIONS = (224, 192, 160, 128)
# tf-slim mobilenet/README.md (V2), million MACs, columns 224/192/160/128/96.
V2_MACS_M = {
    1.0: (300, 221, 154, 99, 56), 0.75: (209, 153, 107, 69, 39),
    0.5: (97, 71, 50, 32, 18), 0.35: (59, 43, 30, 20, 11),
}
V2_RESOLUTIONS = (224, 192, 160, 128, 96)
V3_LARGE_MACS_M = 217
V3_SMALL_MACS_M = (56, 57)

# Exact parameter counts at 1000 classes (Keras MobileNet trainable; torchvision).
PARAMS = {
    "mobilenet_v1": 4_231_976,
    "mobilenet_v2": 3_504_872,
    "mobilenet_v3_large": 5_483_032,
    "mobilenet_v3_small": 2_542_856,
}
