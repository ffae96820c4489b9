"""Scale-out: encode on a Ray cluster (optional extra: `pip install longapps[ray]`)."""
from longapps.distributed.ray_encode import RayConfig, RayEncodeBackend, ray_available

__all__ = ["RayConfig", "RayEncodeBackend", "ray_available"]
