#ifndef PXGUARD_CYAML_SHIM_H
#define PXGUARD_CYAML_SHIM_H
#include <yaml.h>
#endif
