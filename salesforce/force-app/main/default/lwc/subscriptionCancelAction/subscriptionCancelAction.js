import { LightningElement, api } from 'lwc';

// The subscription's "Cancel" action: builds its Cancellation deal.
export default class SubscriptionCancelAction extends LightningElement {
    @api recordId;
}
