/*
 * /init of the initramfs that runs exported KVM selftests in the nested-KVM
 * target's guest: mount devtmpfs, proc and sysfs, run each program in /tests
 * in turn, print its exit status, power off.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/wait.h>
#include <unistd.h>

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

int main(void)
{
	struct dirent **tests;
	int n;

	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	mount("proc", "/proc", "proc", 0, NULL);
	mount("sysfs", "/sys", "sysfs", 0, NULL);
	setvbuf(stdout, NULL, _IONBF, 0);
	n = scandir("/tests", &tests, NULL, by_name);
	for (int i = 0; i < n; i++) {
		char path[300];
		int status = 0;
		pid_t pid;

		if (tests[i]->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/tests/%s", tests[i]->d_name);
		printf("XCHECK-START %s\n", tests[i]->d_name);
		pid = fork();
		if (pid == 0) {
			execl(path, path, (char *)NULL);
			_exit(127);
		}
		waitpid(pid, &status, 0);
		printf("XCHECK-EXIT %s %d\n", tests[i]->d_name,
		       WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	}
	printf("XCHECK-DONE\n");
	sync();
	reboot(RB_POWER_OFF);
	return 0;
}
