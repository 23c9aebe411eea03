// lightning/actions has no stub in sfdx-lwc-jest: the close event a screen quick action sends.
export const CloseScreenEventName = 'lightning__actionsclosescreen';

export class CloseActionScreenEvent extends CustomEvent {
    constructor() {
        super(CloseScreenEventName);
    }
}
