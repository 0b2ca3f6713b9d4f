print("pxguard")
