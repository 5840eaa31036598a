/* mode.c: the arming modes' names, as the command line, the daemon's INI file and meta.json
 * spell them. */
#include <string.h>

#include "kdh/harvest.h"

static const char *const k_mode_names[] = {
    [KDH_HARVEST_HITTAG] = "hittag",
    [KDH_HARVEST_SPECIALPOOL] = "specialpool",
    [KDH_HARVEST_ENTRY] = "entry",
};

int kdh_harvest_mode_parse(const char *name, kdh_harvest_mode_t *mode)
{
    for (size_t i = 0; name && i < sizeof k_mode_names / sizeof k_mode_names[0]; i++)
        if (strcmp(name, k_mode_names[i]) == 0) {
            *mode = (kdh_harvest_mode_t)i;
            return KDH_OK;
        }
    return KDH_EINVAL;
}

const char *kdh_harvest_mode_name(kdh_harvest_mode_t mode)
{
    return (unsigned)mode < sizeof k_mode_names / sizeof k_mode_names[0] ? k_mode_names[mode] : "hittag";
}
