"""tongdai: the hotline controller and operator tools."""
