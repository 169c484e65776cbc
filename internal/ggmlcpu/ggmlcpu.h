#pragma once
#ifdef __cplusplus
extern "C" {
#endif
int lldiff_amx_compiled(void);
#ifdef __cplusplus
}
#endif
