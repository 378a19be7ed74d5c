#ifndef MOEKIT_CRC32C_H
#define MOEKIT_CRC32C_H

#include <stddef.h>
#include <stdint.h>

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of every record
// in the expert store. `crc` is the CRC of the bytes before `data` (0 to start), so
// crc32c(a ++ b) == moe_crc32c_update(moe_crc32c_update(0, a), b).

/// Uses the SSE4.2 crc32 instruction when the CPU has it, otherwise the portable path.
uint32_t moe_crc32c_update(uint32_t crc, const void *data, size_t count);

/// Table-driven (slicing-by-8) implementation; same results on every CPU.
uint32_t moe_crc32c_update_portable(uint32_t crc, const void *data, size_t count);

/// Whether moe_crc32c_update runs on the crc32 instruction.
int moe_crc32c_is_hardware(void);

#endif
