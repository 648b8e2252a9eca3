// stores/websocket.ts
import { defineStore } from 'pinia';
import { ref } from 'vue';
export const useWebSocketStore = defineStore('websocket', () => {
    const ws = ref(null);
    const connected = ref(false);
    const messages = ref([]);
    // 连接 WebSocket
    const connect = (token) => {
        const wsUrl = `ws://localhost:8087/ws?token=${token}`;
        ws.value = new WebSocket(wsUrl);
        // 连接成功
        ws.value.onopen = () => {
            console.log('WebSocket connected');
            connected.value = true;
        };
        // 接收消息
        ws.value.onmessage = (event) => {
            const data = JSON.parse(event.data);
            messages.value.push(data);
            // 处理不同类型的消息
            handleMessage(data);
        };
        // 连接关闭
        ws.value.onclose = () => {
            console.log('WebSocket closed');
            connected.value = false;
            // 自动重连（5秒后）
            setTimeout(() => connect(token), 5000);
        };
        // 错误处理
        ws.value.onerror = (error) => {
            console.error('WebSocket error:', error);
        };
    };
    // 发送消息
    const send = (message) => {
        if (ws.value && connected.value) {
            ws.value.send(JSON.stringify(message));
        }
    };
    // 断开连接
    const disconnect = () => {
        if (ws.value) {
            ws.value.close();
            ws.value = null;
            connected.value = false;
        }
    };
    return {
        connected,
        messages,
        connect,
        send,
        disconnect
    };
});
