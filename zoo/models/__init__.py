"""Plain ``nn.Module`` families, one file each; importing a family registers its builders."""
