/*
 * sockopt: TCP options on one socket.
 */
#include "sockopt.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

void sockopt_ack_now(uv_tcp_t *tcp)
{
    uv_os_fd_t fd;
    int on = 1;
    /* TCP_QUICKACK is not sticky: it sends a pending ACK and lets the
     * kernel go back to delaying the following ones. */
    if (uv_fileno((uv_handle_t *)tcp, &fd) == 0)
        setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &on, sizeof(on));
}

int sockopt_has_unread_input(uv_tcp_t *tcp)
{
    uv_os_fd_t fd;
    int n = 0;
    if (uv_fileno((uv_handle_t *)tcp, &fd) != 0 || ioctl(fd, FIONREAD, &n) != 0)
        return 1;
    return n > 0;
}
