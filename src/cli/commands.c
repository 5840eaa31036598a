/* commands.c: the table of kdharvest subcommands. To add a command, write its handler in
 * src/cli/cmd_<name>.c, add that file to SOURCES in src/cli/CMakeLists.txt, and add one
 * declaration and one row below (rows in the order the usage listing should show them). */
#include "kdh/cli.h"

int kdh_cli_cmd_help(int argc, char **argv);
int kdh_cli_cmd_version(int argc, char **argv);
int kdh_cli_cmd_selftest_link(int argc, char **argv);
int kdh_cli_cmd_report(int argc, char **argv);
int kdh_cli_cmd_ingest(int argc, char **argv);
int kdh_cli_cmd_tag(int argc, char **argv);
int kdh_cli_cmd_run(int argc, char **argv);
int kdh_cli_cmd_harvest_demo(int argc, char **argv);
int kdh_cli_cmd_probe(int argc, char **argv);
int kdh_cli_cmd_stack(int argc, char **argv);
int kdh_cli_cmd_pool(int argc, char **argv);
int kdh_cli_cmd_owner(int argc, char **argv);

const kdh_cli_command_t kdh_cli_commands[] = {
    {"help", "show the usage of kdharvest or of one command", kdh_cli_cmd_help},
    {"run", "harvest the allocation stacks of one pool tag from a target (PoolHitTag)", kdh_cli_cmd_run},
    {"version", "print the kdharvest version", kdh_cli_cmd_version},
    {"selftest-link", "check the serial link end to end over a pseudo-terminal (no target needed)",
     kdh_cli_cmd_selftest_link},
    {"demo", "harvest a simulated target (kdsim, leaking driver) for 20 s and print the report", kdh_cli_cmd_harvest_demo},
    {"report", "report run directories: top stacks, drivers, growth, diff, folded", kdh_cli_cmd_report},
    {"ingest", "parse kd/WinDbg logs, Driver Verifier, poolmon and !poolused/!vm output into a run", kdh_cli_cmd_ingest},
    {"tag", "print a pool tag's DWORD and the commands that arm it", kdh_cli_cmd_tag},
    {"probe", "connect to a target: kernel, modules, symbols, pool-tracking addresses; then detach", kdh_cli_cmd_probe},
    {"stack", "print the current stack of every processor of a target, like WinDbg's k", kdh_cli_cmd_stack},
    {"pool", "live pool usage by tag (!poolused), or sampled over time to find growing tags", kdh_cli_cmd_pool},
    {"owner", "which driver uses a pool tag: search driver images (a folder or a live target)", kdh_cli_cmd_owner},
};

const size_t kdh_cli_command_count = KDH_ARRAY_LEN(kdh_cli_commands);
