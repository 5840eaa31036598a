/* main.c: the kdharvest executable; everything it does lives in library kdh_cli so that tests
 * can call kdh_cli_main() in-process. */
#include "kdh/cli.h"

int main(int argc, char **argv)
{
    return kdh_cli_main(argc, argv);
}
