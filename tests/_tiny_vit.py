"""A two-layer AutoFormer ViT on 8x8 images (patch 4, embed 8, 4-wide heads, relative positions
clipped at 2): small enough for float64 reference checks, with every layer the spaces build."""

from search_spaces._autoformer_layers import Variant, VisionTransformer


def tiny_vit() -> tuple[Variant, VisionTransformer]:
    variant = Variant(head_dim=4, max_relative_position=2, ln_epsilon=1e-5)
    return variant, VisionTransformer(
        embed_dim=8,
        num_heads=(2, 1),
        mlp_ratios=(2.0, 1.5),
        patch_size=4,
        num_classes=3,
        variant=variant,
    )
