/*
 * A QEMU TCG plugin (QEMU 7.2 API) for bench/arm_instructions.py: counts the guest
 * instructions executed and prints the running total whenever the guest makes the marker
 * system call (an unused number, MARKER below), tagged with its first argument. The guest
 * brackets what it wants counted with two markers; QEMU answers the call itself with ENOSYS.
 *
 * Each translated block adds its instruction count to one shared counter when it starts
 * (an inline add, no helper call). The add is not atomic: two guest threads running at once
 * could lose counts, so the bench runs one computing thread.
 *
 * Output: "mark TAG COUNT" lines through qemu_plugin_outs (QEMU's log: -d plugin -D FILE).
 */
#include <inttypes.h>
#include <stdio.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define MARKER 4000

static uint64_t executed;

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed,
                                             qemu_plugin_tb_n_insns(tb));
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1,
                       uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6,
                       uint64_t a7, uint64_t a8)
{
    char line[64];

    if (num != MARKER) {
        return;
    }
    snprintf(line, sizeof line, "mark %" PRIu64 " %" PRIu64 "\n", a1, executed);
    qemu_plugin_outs(line);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv)
{
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    return 0;
}
