// The collector's entry points called from Python directly (csrc/cpu/collector.cpp): rlarena._C's methods.
#pragma once

#include <Python.h>

namespace rlarena {
namespace cpu {

// rollout_capsule, rollout_act, rollout_record; a null-terminated PyMethodDef table.
PyMethodDef* collector_python_methods();

}  // namespace cpu
}  // namespace rlarena
